"""The trivial baseline: mean MFCC / log-mel per utterance, centred cosine, EER per trial list."""

import runpy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from oskdft.data.kaldi_dir import write_data_dir
from oskdft.recipes.baseline import FEATURES, baseline_eers, centred_cosine_scores
from oskdft.recipes.synthetic import MiniCorpusSpec, prepare_mini_corpus
from oskdft.utils.errors import InputError

REPO = Path(__file__).resolve().parents[2]
RATE = 16000


def coloured_noise(seconds: float, cutoff_hz: float, highpass: bool, seed: int) -> np.ndarray:
    """White noise with everything below (highpass) or above (lowpass) ``cutoff_hz`` removed."""
    noise = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1.0 / RATE)
    spectrum[(freqs < cutoff_hz) if highpass else (freqs > cutoff_hz)] = 0.0
    out = np.fft.irfft(spectrum, len(noise))
    return 0.1 * out / out.std()


def test_features_shapes_and_level():
    """MFCCs without c0 ignore the recording level; log-mel energies shift by it."""
    x = torch.from_numpy(coloured_noise(1.0, 3000.0, False, seed=0)).float()
    quieter = 0.25 * x
    frames = 1 + (RATE - 400) // 160  # Kaldi: 25 ms windows every 10 ms, edges snipped
    mfcc, log_mel = FEATURES.get("mfcc"), FEATURES.get("logmel")
    assert mfcc(x).shape == (frames, 19) and log_mel(x).shape == (frames, 40)
    assert torch.allclose(mfcc(quieter).mean(0), mfcc(x).mean(0), atol=0.05)
    shift = log_mel(quieter).mean(0) - log_mel(x).mean(0)
    assert torch.allclose(shift, torch.full_like(shift, 2 * np.log(0.25)), atol=0.05)


def test_centred_cosine_ignores_a_common_offset():
    rng = np.random.default_rng(0)
    embeddings = {f"u{i}": rng.standard_normal(5) for i in range(6)}
    trials = [("u0", "u1", True), ("u2", "u3", False), ("u4", "u5", False), ("u1", "u0", True)]
    scores = centred_cosine_scores(embeddings, trials)
    shifted = centred_cosine_scores({u: e + 100.0 for u, e in embeddings.items()}, trials)
    assert np.allclose(scores, shifted)
    assert scores[0] == pytest.approx(scores[3])  # symmetric
    same = centred_cosine_scores(embeddings, [("u2", "u2", True)])
    assert same[0] == pytest.approx(1.0)


def make_two_speaker_dir(root: Path) -> Path:
    """Speaker lo sounds dark (low-pass noise), speaker hi bright (high-pass), at varied levels.
    An utterance that no trial names points to a missing file: it must not be read."""
    wav_scp, utt2spk = {}, {}
    for k in range(3):
        for spk, highpass in (("lo", False), ("hi", True)):
            utt = f"{spk}-s{k}-00001"
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            audio = (0.3 + 0.6 * k) * coloured_noise(0.5, 2000.0, highpass, seed=k)
            sf.write(str(path), audio, RATE)
            wav_scp[utt], utt2spk[utt] = str(path), spk
    wav_scp["lo-s9-00001"], utt2spk["lo-s9-00001"] = str(root / "missing.wav"), "lo"
    trials = [
        ("lo-s0-00001", "lo-s1-00001", True),
        ("hi-s0-00001", "hi-s2-00001", True),
        ("lo-s0-00001", "hi-s1-00001", False),
        ("lo-s2-00001", "hi-s0-00001", False),
    ]
    data = root / "data"
    write_data_dir(data, wav_scp, utt2spk, trials={"toy": trials})
    return data


def test_baseline_eers_separates_spectrally_distinct_speakers(tmp_path):
    eers = baseline_eers(make_two_speaker_dir(tmp_path), features=["mfcc", "logmel"])
    assert eers == {"toy": {"mfcc": 0.0, "logmel": 0.0}}


def test_baseline_rejects_segments(tmp_path):
    data = make_two_speaker_dir(tmp_path)
    utts = sorted(line.split()[0] for line in (data / "utt2spk").read_text().splitlines())
    (data / "segments").write_text("".join(f"{utt} {utt} 0.0 0.4\n" for utt in utts))
    with pytest.raises(InputError, match="segments"):
        baseline_eers(data)


def test_compute_baseline_script_prints_one_line_per_list_and_feature(tmp_path, capsys):
    main = runpy.run_path(str(REPO / "local" / "compute_baseline.py"), run_name="test")["main"]
    main(["--features", "mfcc", str(make_two_speaker_dir(tmp_path))])
    assert capsys.readouterr().out == "trials_toy mfcc EER 0.00%\n"


def test_baseline_fails_on_the_mini_corpus(tmp_path):
    """egs/mini must need a trained model: the trivial baseline stays well above 10% EER."""
    spec = MiniCorpusSpec(
        train_speakers=2,
        test_speakers=8,
        utts_per_session=(2, 3),
        utt_seconds=(1.0, 2.0),
        babble_files=1,
        noise_files=1,
        music_files=1,
        rir_files=1,
        aug_seconds=(0.5, 0.5),
        stereo_files=1,
        resampled_files=1,
    )
    prepare_mini_corpus(tmp_path / "data", seed=0, spec=spec)
    eers = baseline_eers(tmp_path / "data" / "test")
    assert set(eers) == {"mini"}
    assert eers["mini"]["mfcc"] > 0.15 and eers["mini"]["logmel"] > 0.15
