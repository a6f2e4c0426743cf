"""Stage 1: windows, validation split, back-end subset, augmentation sets."""

from collections import Counter, defaultdict

import numpy as np
import pytest
from lhotse import CutSet

from oskdft.data.audio import load_audio
from oskdft.data.kaldi_dir import DataDir, Segment, read_data_dir, write_data_dir
from oskdft.data.windows import (
    aug_kind,
    make_windows,
    make_windows_from_config,
    read_train_speakers,
    sample_balanced_trials,
    sample_per_speaker,
    shift_window,
    speaker_counts,
    window_starts,
    write_subset_dir,
)
from oskdft.layout import aug_cuts_path, manifest_path, windows_path
from oskdft.utils.errors import InputError
from tests.data.toy_corpus import AUG_SETS, RATE, UTT_SECONDS, make_toy_corpus, toy_data_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_toy_corpus(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def stage1(corpus):
    stats = make_windows_from_config(corpus, toy_data_config(), "train", AUG_SETS)
    return corpus, stats


def windows_by_utterance(data):
    grouped = defaultdict(list)
    for window in CutSet.from_file(windows_path(data)):
        grouped[window.custom["utterance"]].append(window)
    return grouped


def test_window_starts_cover_whole_windows_only():
    # 5.5 s at 2 s every 1 s: starts 0..3 s; the last window ends at 5 s <= 5.5 s.
    assert (window_starts(88000, 32000, 16000) / 16000).tolist() == [0, 1, 2, 3]
    assert window_starts(32000, 32000, 16000).tolist() == [0]  # exactly one window long
    assert window_starts(31999, 32000, 16000).size == 0
    assert window_starts(40000, 16000, 8000).tolist() == [0, 8000, 16000, 24000]


def test_windows_have_the_configured_boundaries_and_counts(stage1):
    data, stats = stage1
    utterances = {c.id: c for c in CutSet.from_file(manifest_path(data, "train", "cuts"))}
    grouped = windows_by_utterance(data)
    expected = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}  # by UTT_SECONDS index: floor((D - 2) / 1) + 1
    for utt, windows in grouped.items():
        source = utterances[utt]
        seconds_index = UTT_SECONDS.index(source.duration)
        assert len(windows) == expected[seconds_index]
        for k, window in enumerate(windows):
            assert window.id == f"{utt}-w{k:04d}"
            assert window.start == pytest.approx(source.start + k * 1.0)
            assert window.duration == 2.0 and window.num_samples == 2 * RATE
            assert window.supervisions[0].speaker == source.supervisions[0].speaker
            # The window's samples are exactly that stretch of the utterance.
            expected_audio = load_audio(source)[k * RATE : (k + 2) * RATE]
            np.testing.assert_array_equal(load_audio(window), expected_audio)
    # The 1.5 s utterances are skipped, and counted.
    assert all(utterances[u].duration >= 2.0 for u in grouped)
    assert stats.skipped_short == stats.train_speakers
    assert stats.windows == sum(len(w) for w in grouped.values())


def test_shift_window_rebuilds_every_window_from_the_first(stage1):
    data, _ = stage1
    for windows in windows_by_utterance(data).values():
        for k, window in enumerate(windows):
            rebuilt = shift_window(windows[0], window.start, k)
            assert rebuilt.to_dict() == window.to_dict()


def test_validation_speakers_are_held_out_of_training(stage1):
    data, stats = stage1
    train_speakers = set(read_train_speakers(data))
    valid = CutSet.from_file(data / "manifests" / "valid_cuts.jsonl.gz")
    valid_speakers = {c.supervisions[0].speaker for c in valid}
    assert len(valid_speakers) == stats.valid_speakers == 2
    assert not valid_speakers & train_speakers
    window_speakers = {w.supervisions[0].speaker for w in CutSet.from_file(windows_path(data))}
    assert window_speakers == train_speakers
    assert Counter(c.supervisions[0].speaker for c in valid) == {s: 3 for s in valid_speakers}
    backend = CutSet.from_file(data / "manifests" / "backend_cuts.jsonl.gz")
    assert Counter(c.supervisions[0].speaker for c in backend) == {s: 2 for s in train_speakers}


def test_valid_kaldi_dir_and_trials(stage1, corpus):
    data, _ = stage1
    source = read_data_dir(corpus / "train")
    valid = read_data_dir(data / "valid")
    assert valid.utt2spk == {u: source.utt2spk[u] for u in valid.utt2spk}
    assert valid.wav_scp == {u: source.wav_scp[u] for u in valid.wav_scp}
    trials = valid.trials["valid"]
    assert len({(a, b) for a, b, _ in trials}) == len(trials)
    assert sum(t for _, _, t in trials) == len(trials) // 2  # balanced
    for a, b, is_target in trials:
        assert a < b and a in valid.utt2spk and b in valid.utt2spk
        assert is_target == (valid.utt2spk[a] == valid.utt2spk[b])
    backend = read_data_dir(data / "backend")
    assert set(backend.utt2spk.values()) == set(read_train_speakers(data))


def test_speaker_lists_and_counts(stage1):
    data, stats = stage1
    speakers = read_train_speakers(data)
    assert speakers == sorted(speakers) and len(speakers) == stats.train_speakers
    per_speaker = Counter(w.supervisions[0].speaker for w in CutSet.from_file(windows_path(data)))
    assert speaker_counts(data, "windows").tolist() == [per_speaker[s] for s in speakers]
    # Utterances with at least one window: all but the 1.5 s one.
    assert speaker_counts(data).tolist() == [len(UTT_SECONDS) - 1] * len(speakers)


def test_aug_sets_by_kind(stage1):
    data, _ = stage1
    for kind, count in {"noise": 2, "music": 2, "speech": 4, "rir": 2}.items():
        cuts = CutSet.from_file(aug_cuts_path(data, kind))
        assert len(cuts) == count and all(c.sampling_rate == RATE for c in cuts)
    assert aug_kind("musan_speech") == "speech"
    with pytest.raises(InputError, match="exactly one of"):
        aug_kind("rirs_noises")


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    data = make_toy_corpus(tmp_path)

    def valid_speakers(seed):
        make_windows_from_config(data, toy_data_config(seed=seed), "train", AUG_SETS)
        return (data / "valid" / "utt2spk").read_text()

    first = valid_speakers(3)
    assert valid_speakers(3) == first
    assert any(valid_speakers(seed) != first for seed in (4, 5, 6))


def test_make_windows_reads_the_yaml_config(corpus, tmp_path):
    conf = tmp_path / "data.yaml"
    conf.write_text(
        "window_seconds: 3.0\nwindow_hop_seconds: 0.5\nvalid_speakers: 1\n"
        "valid_utts_per_speaker: 2\nvalid_trials: 4\nseed: 3\n"
    )
    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    for kind in ("cuts", "recordings", "supervisions"):
        target = manifest_path(data, "train", kind)
        target.write_bytes(manifest_path(corpus, "train", kind).read_bytes())
    (data / "train").symlink_to(corpus / "train")
    stats = make_windows(data, conf, "train")
    # 3.3 s -> 1 window, 4.0 s -> 3, 5.0 s -> 5 (3 s every 0.5 s); 1.5 s and 2.0 s skipped.
    assert stats.windows == 5 * (1 + 3 + 5) and stats.skipped_short == 5 * 2
    for windows in windows_by_utterance(data).values():  # half-second starts rebuild exactly
        for k, window in enumerate(windows):
            assert window.start == pytest.approx(0.5 * k)
            assert shift_window(windows[0], window.start, k).to_dict() == window.to_dict()


def test_too_many_validation_speakers_is_an_input_error(corpus, tmp_path):
    with pytest.raises(InputError, match="valid_speakers=5 is too many"):
        make_windows_from_config(corpus, toy_data_config(valid_speakers=5), "train")


def test_a_failed_run_leaves_earlier_outputs_intact(stage1):
    data, _ = stage1
    before = {p: p.read_bytes() for p in (data / "manifests").iterdir()}
    with pytest.raises(InputError, match="no training utterance is as long as one window"):
        make_windows_from_config(data, toy_data_config(window_seconds=9.0), "train", AUG_SETS)
    with pytest.raises(InputError, match="manifest not found"):
        make_windows_from_config(data, toy_data_config(), "train", ["musan_noise", "more_noise"])
    assert {p: p.read_bytes() for p in (data / "manifests").iterdir()} == before


def test_a_data_dir_out_of_step_with_the_manifests_fails_before_writing(corpus, tmp_path):
    data = tmp_path / "data"
    (data / "manifests").mkdir(parents=True)
    train = manifest_path(data, "train", "cuts")
    train.write_bytes(manifest_path(corpus, "train", "cuts").read_bytes())
    kaldi = read_data_dir(corpus / "train")
    write_data_dir(data / "train", kaldi.wav_scp, kaldi.utt2spk)
    make_windows_from_config(data, toy_data_config(), "train")
    outputs = [p for d in ("manifests", "valid", "backend") for p in (data / d).iterdir()]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    # The Kaldi dir loses a back-end utterance that the manifest still has.
    dropped = (data / "backend" / "utt2spk").read_text().split()[0]
    write_data_dir(
        data / "train",
        {u: w for u, w in kaldi.wav_scp.items() if u != dropped},
        {u: s for u, s in kaldi.utt2spk.items() if u != dropped},
    )
    with pytest.raises(InputError) as e:
        make_windows_from_config(data, toy_data_config(), "train")
    assert e.value.path == str(data / "train" / "utt2spk")
    assert repr(dropped) in str(e.value) and str(train) in str(e.value)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs} == before


def test_sample_rate_other_than_stage_0s_is_an_input_error(corpus, tmp_path):
    conf = tmp_path / "data.yaml"
    conf.write_text("sample_rate: 8000\n")
    with pytest.raises(InputError, match="sample_rate must be 16000") as e:
        make_windows(corpus, conf, "train")
    assert e.value.path == str(conf)


def test_sample_per_speaker_caps_each_speaker():
    speakers = np.repeat(np.arange(50), np.arange(1, 51))
    mask = sample_per_speaker(speakers, 7, np.random.default_rng(0))
    assert np.bincount(speakers[mask]).tolist() == [min(n, 7) for n in range(1, 51)]


def test_sample_per_speaker_takes_only_eligible_utterances():
    speakers = np.repeat(np.arange(50), np.arange(1, 51))
    eligible = np.random.default_rng(1).random(len(speakers)) < 0.5
    mask = sample_per_speaker(speakers, 7, np.random.default_rng(0), eligible)
    assert not mask[~eligible].any()
    per_speaker = np.bincount(speakers[eligible], minlength=50)
    assert np.bincount(speakers[mask], minlength=50).tolist() == np.minimum(per_speaker, 7).tolist()


def test_utterances_too_short_to_embed_are_in_neither_valid_nor_backend(tmp_path, caplog):
    # Each speaker's first utterance lasts 50 ms: shorter than the SSL models' first frame plus
    # margin (stage 0's minimum for evaluation utterances), so stage 4 could not embed it.
    data = make_toy_corpus(tmp_path, num_speakers=5, utt_seconds=(0.05, 2.0, 3.3, 4.0))
    cfg = toy_data_config(valid_utts_per_speaker=4, backend_utts_per_speaker=4)
    with caplog.at_level("INFO"):
        stats = make_windows_from_config(data, cfg, "train", AUG_SETS)
    short = {f"spk{k}-u1" for k in range(1, 6)}
    valid = set(read_data_dir(data / "valid").utt2spk)
    backend = set(read_data_dir(data / "backend").utt2spk)
    assert not short & (valid | backend)
    # Nothing else is left out: every other utterance of their speakers is taken.
    assert len(valid) == 2 * 3 and len(backend) == 3 * 3
    assert stats.too_short_to_embed == 5
    assert "5 utterances shorter than 0.1 s in neither" in caplog.text


def test_sample_balanced_trials_is_balanced_and_capped():
    speakers = np.repeat(np.arange(10), 4)
    utts = [f"s{s}-u{i}" for i, s in enumerate(speakers)]
    trials = sample_balanced_trials(utts, speakers, 1000, np.random.default_rng(0))
    targets = [t for t in trials if t[2]]
    assert len(targets) == 10 * 6  # every same-speaker pair, no more
    assert len(trials) == 2 * len(targets)
    assert len(set(trials)) == len(trials)
    few = sample_balanced_trials(utts, speakers, 10, np.random.default_rng(1))
    assert len(few) == 10 and sum(t[2] for t in few) == 5


def test_subset_dir_keeps_segments_and_piped_commands(tmp_path):
    source = DataDir(
        path=tmp_path / "train",
        wav_scp={"rec1": "/corpus/rec1.wav", "rec2": "sox /corpus/rec2.sph -t wav - |"},
        utt2spk={"spk1-a": "spk1", "spk1-b": "spk1", "spk2-a": "spk2"},
        segments={
            "spk1-a": Segment("rec1", 0.0, 1234.567),
            "spk1-b": Segment("rec2", 1.5, None),
            "spk2-a": Segment("rec2", 2.25, 3.5),
        },
    )
    write_subset_dir(
        tmp_path / "subset", source, ["spk2-a", "spk1-b"], {"valid": [("spk1-b", "spk2-a", False)]}
    )
    subset = read_data_dir(tmp_path / "subset")
    assert subset.wav_scp == {"rec2": "sox /corpus/rec2.sph -t wav - |"}
    assert subset.segments == {u: source.segments[u] for u in ("spk1-b", "spk2-a")}
    assert subset.utt2spk == {"spk1-b": "spk1", "spk2-a": "spk2"}
    assert subset.trials == {"valid": [("spk1-b", "spk2-a", False)]}
