"""The synthetic egs/mini corpus: determinism, layout, speakers, trials, audio formats, and
the two properties the recipe relies on (speakers differ in the voice; the channel hides
it from an utterance's mean spectrum)."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from oskdft.data.audio import load_audio
from oskdft.data.kaldi_dir import read_data_dir, validate_data_dir
from oskdft.recipes import synthetic
from oskdft.recipes.baseline import centred_cosine_scores, mfcc
from oskdft.recipes.synthetic import (
    SAMPLE_RATE,
    MiniCorpusSpec,
    Voice,
    apply_channel,
    make_trials,
    prepare_mini_corpus,
    random_channel,
    random_voice,
    resample,
    synthesize_noise,
    synthesize_rir,
    synthesize_speech,
)
from oskdft.scoring.metrics import compute_eer

SMALL = MiniCorpusSpec(
    train_speakers=4,
    test_speakers=8,
    sessions=3,
    utts_per_session=(2, 3),
    utt_seconds=(1.0, 2.0),
    babble_files=2,
    noise_files=2,
    music_files=2,
    rir_files=2,
    aug_seconds=(1.0, 1.5),
    stereo_files=1,
    resampled_files=1,
    nontargets_per_target=3,
)
AUG_SETS = ("musan_noise", "musan_music", "musan_speech", "rirs")
UTT_ID = re.compile(r"^(id1\d{4})-([A-Za-z0-9]{11})-(\d{5})$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("mini") / "data"
    prepare_mini_corpus(data, seed=0, spec=SMALL)
    return data


def tables(data: Path, corpus_dir: Path) -> dict:
    """Every data dir file, with the corpus path made relative (to compare two corpora)."""
    return {
        str(f.relative_to(data)): f.read_text().replace(str(corpus_dir), "CORPUS")
        for f in sorted(data.glob("*/*"))
        if f.is_file() and corpus_dir not in f.parents
    }


def audio_bytes(corpus_dir: Path) -> dict:
    return {
        str(f.relative_to(corpus_dir)): f.read_bytes() for f in sorted(corpus_dir.rglob("*.wav"))
    }


def test_same_seed_same_corpus_other_seed_another(corpus, tmp_path):
    again = tmp_path / "again"  # made by two processes, the fixture's by one
    prepare_mini_corpus(again, corpus_dir=tmp_path / "audio", seed=0, spec=SMALL, num_workers=2)
    assert tables(again, tmp_path / "audio") == tables(corpus, corpus / "mini_corpus")
    assert audio_bytes(tmp_path / "audio") == audio_bytes(corpus / "mini_corpus")

    other = tmp_path / "other"
    prepare_mini_corpus(other, seed=1, spec=SMALL)
    test_ids = [read_data_dir(d / "test").wav_scp.keys() for d in (corpus, other)]
    assert test_ids[0] != test_ids[1]
    noise_files = [
        read_data_dir(d / "musan_noise", require_speakers=False).wav_scp["noise-0001"]
        for d in (corpus, other)
    ]
    noise = [sf.read(f)[0] for f in noise_files]
    assert not np.array_equal(*noise)


def test_data_dirs_validate_and_follow_voxceleb_layout(corpus):
    for name in ("train", "test"):
        data, recordings = validate_data_dir(
            corpus / name, require_trials=name == "test", min_utts_per_speaker=2
        )
        assert len({spk for spk in data.utt2spk.values()}) == getattr(SMALL, f"{name}_speakers")
        for utt, path in data.wav_scp.items():
            spk, session, number = UTT_ID.match(utt).groups()
            assert data.utt2spk[utt] == spk
            assert Path(path) == corpus / "mini_corpus" / "wav" / spk / session / f"{number}.wav"
            low, high = SMALL.utt_seconds
            assert low - 0.01 <= recordings[utt].duration <= high + 0.01
        sessions = {utt.split("-")[1] for utt in data.wav_scp}
        assert len(sessions) == SMALL.sessions * getattr(SMALL, f"{name}_speakers")
    for name in AUG_SETS:
        data, recordings = validate_data_dir(corpus / name, require_speakers=False)
        assert data.utt2spk is None and not (corpus / name / "utt2spk").exists()
        assert len(data.wav_scp) == 2
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in data.wav_scp.values())


def test_test_speakers_are_disjoint_from_training_speakers(corpus):
    train = set(read_data_dir(corpus / "train").utt2spk.values())
    test = set(read_data_dir(corpus / "test").utt2spk.values())
    assert train and test and not train & test


def test_a_pool_from_another_first_speaker_has_other_voices_and_ids(corpus, tmp_path):
    spec = dataclasses.replace(
        SMALL, first_speaker=1000, train_speakers=2, test_speakers=2, nontargets_per_target=1
    )
    prepare_mini_corpus(tmp_path / "pool", seed=0, spec=spec)
    pool = read_data_dir(tmp_path / "pool" / "train").utt2spk
    assert sorted(set(pool.values())) == ["id11001", "id11002"]
    mini = {
        *read_data_dir(corpus / "train").utt2spk.values(),
        *read_data_dir(corpus / "test").utt2spk.values(),
    }
    assert not mini & set(pool.values())


def test_trials_are_cross_session_with_the_spec_s_non_targets_per_target(corpus):
    data = read_data_dir(corpus / "test")
    trials = data.trials["mini"]
    targets = [t for t in trials if t[2]]
    assert len(trials) - len(targets) == SMALL.nontargets_per_target * len(targets) > 0
    assert len(set(trials)) == len(trials)
    session = {utt: utt.split("-")[1] for utt in data.wav_scp}
    for enrol, test, is_target in trials:
        assert enrol in data.wav_scp and test in data.wav_scp and enrol != test
        assert (data.utt2spk[enrol] == data.utt2spk[test]) == is_target
        assert session[enrol] != session[test]
    # Every cross-session pair of a speaker is a target trial.
    utts = sorted(data.wav_scp)
    expected = sum(
        data.utt2spk[a] == data.utt2spk[b] and session[a] != session[b]
        for i, a in enumerate(utts)
        for b in utts[i + 1 :]
    )
    assert len(targets) == expected


def test_audio_formats_exercise_the_conversion_rule(corpus):
    for name in ("train", "test"):
        infos = {utt: sf.info(path) for utt, path in read_data_dir(corpus / name).wav_scp.items()}
        assert all(info.subtype == "PCM_16" for info in infos.values())
        stereo = [utt for utt, info in infos.items() if info.channels == 2]
        other_rate = [utt for utt, info in infos.items() if info.samplerate == 22050]
        assert len(stereo) == SMALL.stereo_files and len(other_rate) == SMALL.resampled_files
        assert all(info.channels == 1 for utt, info in infos.items() if utt not in stereo)
        assert all(
            info.samplerate == SAMPLE_RATE for utt, info in infos.items() if utt not in other_rate
        )
        path = read_data_dir(corpus / name).wav_scp
        # Channel 0 is the utterance; channel 1 a quieter second microphone.
        both = sf.read(path[stereo[0]])[0]
        assert np.std(both[:, 0]) > 1.5 * np.std(both[:, 1])
        # The 22.05 kHz file, read by the pipeline's rule, is as long as it was at 16 kHz.
        info = infos[other_rate[0]]
        expected = info.duration * SAMPLE_RATE
        assert len(load_audio(path[other_rate[0]])) == pytest.approx(expected, abs=2)
    for name in AUG_SETS:
        for path in read_data_dir(corpus / name, require_speakers=False).wav_scp.values():
            info = sf.info(path)
            assert (info.samplerate, info.channels) == (SAMPLE_RATE, 1)


def test_interrupted_rerun_keeps_the_previous_corpus(tmp_path, monkeypatch):
    spec = MiniCorpusSpec(
        train_speakers=2,
        test_speakers=2,
        sessions=2,
        utts_per_session=(1, 1),
        nontargets_per_target=1,
        utt_seconds=(0.5, 0.5),
        babble_files=1,
        noise_files=1,
        music_files=1,
        rir_files=1,
        aug_seconds=(0.5, 0.5),
        stereo_files=0,
        resampled_files=0,
    )
    data = tmp_path / "data"
    prepare_mini_corpus(data, seed=0, spec=spec)
    before_tables = tables(data, data / "mini_corpus")
    before_audio = audio_bytes(data / "mini_corpus")

    def fail(*args, **kwargs):  # after the speakers and the noise files are written
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "synthesize_music", fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_mini_corpus(data, seed=3, spec=spec)
    assert tables(data, data / "mini_corpus") == before_tables
    assert audio_bytes(data / "mini_corpus") == before_audio
    # Nothing half-made is left behind, not even a temporary directory.
    assert sorted(p.name for p in data.iterdir()) == sorted(
        ["mini_corpus", "train", "test", *AUG_SETS]
    )


def test_make_trials_needs_enough_speakers():
    utt2spk = {"a-x-1": "a", "a-y-1": "a"}  # one speaker: no different-speaker pair
    with pytest.raises(ValueError, match="more speakers"):
        make_trials(utt2spk, {u: u.split("-")[1] for u in utt2spk}, np.random.default_rng(0))


def test_prepare_refuses_a_single_session(tmp_path):
    with pytest.raises(ValueError, match="sessions"):
        prepare_mini_corpus(tmp_path, spec=MiniCorpusSpec(sessions=1))


# ---------------------------------------------------------------------------------------------
# The signal models


def median_f0(x: np.ndarray) -> float:
    """Median F0 (Hz) of the strongly periodic 40 ms frames, by autocorrelation (60-400 Hz)."""
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::160]
    frames = frames - frames.mean(axis=1, keepdims=True)
    acf = np.fft.irfft(np.abs(np.fft.rfft(frames, 1280)) ** 2, 1280)[:, :267]
    acf /= acf[:, :1] + 1e-12
    lag = 40 + np.argmax(acf[:, 40:], axis=1)
    periodic = acf[np.arange(len(acf)), lag] > 0.5
    return float(np.median(SAMPLE_RATE / lag[periodic]))


def steady_voice(**changes) -> Voice:
    """A random voice with a nearly flat intonation, changed as asked."""
    changes = {"f0_range_semitones": 0.3, "jitter_semitones": 0.0, **changes}
    return dataclasses.replace(random_voice(np.random.default_rng(0)), **changes)


@pytest.mark.parametrize("f0", [100.0, 180.0])
def test_speech_has_the_voice_pitch(f0):
    speech = synthesize_speech(steady_voice(f0_hz=f0), 2.0, np.random.default_rng(1))
    assert len(speech) == 2 * SAMPLE_RATE
    assert np.sqrt(np.mean(speech**2)) == pytest.approx(0.1, rel=1e-3)
    assert median_f0(speech) == pytest.approx(f0, rel=0.06)


def test_shorter_vocal_tract_raises_the_spectrum():
    def centroid(vtl_scale: float) -> float:
        voice = steady_voice(vtl_scale=vtl_scale)
        speech = synthesize_speech(voice, 2.0, np.random.default_rng(2))
        power = np.abs(np.fft.rfft(speech)) ** 2
        freqs = np.fft.rfftfreq(len(speech), 1.0 / SAMPLE_RATE)
        return float(np.sum(freqs * power) / np.sum(power))

    assert centroid(1.2) > 1.1 * centroid(0.9)


def test_channel_sets_level_and_keeps_length():
    speech = synthesize_speech(steady_voice(), 1.5, np.random.default_rng(3))
    channel = random_channel(np.random.default_rng(4))
    recorded = apply_channel(speech, channel, np.random.default_rng(5))
    assert recorded.shape == speech.shape
    level_db = 20 * np.log10(np.sqrt(np.mean(recorded**2)))
    assert level_db == pytest.approx(channel.level_db, abs=6.0)  # level jitter: sd 1.5 dB


def test_equaliser_band_limits():
    channel = random_channel(np.random.default_rng(6))
    freqs = np.array([channel.low_cut_hz / 4, 1000.0, min(channel.high_cut_hz * 1.6, 8000.0)])
    db = synthetic.equaliser_db(channel, freqs)
    assert db[0] < db[1] - 15 and db[2] < db[1] - 10


def test_rir_and_noise_shapes():
    rir = synthesize_rir(np.random.default_rng(7))
    assert np.argmax(np.abs(rir)) < 0.006 * SAMPLE_RATE and np.max(np.abs(rir)) == 1.0
    late = rir[int(0.8 * len(rir)) :]
    assert np.sqrt(np.mean(late**2)) < 0.05
    noise = synthesize_noise(1.0, np.random.default_rng(8))
    assert len(noise) == SAMPLE_RATE and np.sqrt(np.mean(noise**2)) == pytest.approx(0.1)


def test_resample_keeps_frequencies():
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    out = resample(tone, 22050)
    assert len(out) == 22050
    assert np.argmax(np.abs(np.fft.rfft(out))) == 1000  # 1 Hz bins over 1 s


def test_fft_size_is_the_smallest_5_smooth_length():
    def smooth(k: int) -> bool:
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        return k == 1

    for n in list(range(1, 400)) + [66048, 100003]:
        m = synthetic._fft_size(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


# ---------------------------------------------------------------------------------------------
# What the recipe relies on


def test_identity_is_in_the_voice_and_the_channel_hides_it_from_the_mean_spectrum(corpus):
    """On the test trials, the trivial baseline (mean MFCC, cosine) fails, while a simple
    cue that no channel changes, the median F0, does far better. (Over seeds 0-4 of this
    small corpus: baseline 24-42% EER, median F0 10-21%, at least 14 points apart.)"""
    import torch

    data = read_data_dir(corpus / "test")
    trials = data.trials["mini"]
    labels = np.array([t[2] for t in trials])
    audio = {utt: load_audio(path) for utt, path in data.wav_scp.items()}
    embeddings = {utt: mfcc(torch.from_numpy(x)).mean(0).numpy() for utt, x in audio.items()}
    baseline_eer = compute_eer(centred_cosine_scores(embeddings, trials), labels)[0]
    log_f0 = {utt: np.log(median_f0(x.astype(np.float64))) for utt, x in audio.items()}
    f0_eer = compute_eer(np.array([-abs(log_f0[a] - log_f0[b]) for a, b, _ in trials]), labels)[0]
    assert baseline_eer > 0.15
    assert f0_eer < baseline_eer - 0.08
