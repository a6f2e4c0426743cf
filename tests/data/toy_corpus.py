"""A tiny corpus through the real stage 0, for the stage 1-3 data tests: white-noise
"utterances" of known lengths, and noise / music / speech / RIR sources, at 16 kHz.

Speakers ``spk1..spkN`` have utterances ``spkK-uJ`` lasting ``UTT_SECONDS`` each (one is
shorter than a 2 s window, one exactly a window long). The noise set has a 0.7 s file, so
the looping of short noises is exercised.
"""

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from oskdft.config import DataConfig
from oskdft.data.kaldi_dir import write_data_dir
from oskdft.data.manifests import prepare_manifests

RATE = 16000
UTT_SECONDS = (1.5, 2.0, 3.3, 4.0, 5.0)
AUG_SETS = ("musan_noise", "musan_music", "musan_speech", "rirs")


def _write(path: Path, audio: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.astype(np.float32), RATE, subtype="FLOAT")
    return str(path)


def make_toy_corpus(
    root: Path, num_speakers: int = 6, utt_seconds: Sequence[float] = UTT_SECONDS, seed: int = 0
) -> Path:
    """Write audio and Kaldi dirs under ``root``, run stage 0; return the data dir."""
    rng = np.random.default_rng(seed)
    data = root / "data"
    wav_scp, utt2spk = {}, {}
    for k in range(1, num_speakers + 1):
        for j, seconds in enumerate(utt_seconds, 1):
            utt = f"spk{k}-u{j}"
            level = rng.uniform(0.05, 0.3)
            audio = level * rng.standard_normal(round(seconds * RATE))
            wav_scp[utt] = _write(root / "wav" / f"{utt}.wav", audio)
            utt2spk[utt] = f"spk{k}"
    write_data_dir(data / "train", wav_scp, utt2spk)
    sources = {
        "musan_noise": [0.7, 3.0],
        "musan_music": [3.0, 4.0],
        "musan_speech": [2.5, 3.0, 3.5, 4.0],
    }
    for name, lengths in sources.items():
        write_data_dir(
            data / name,
            {
                f"{name}-{i}": _write(
                    root / name / f"{i}.wav",
                    rng.uniform(0.1, 0.5) * rng.standard_normal(round(s * RATE)),
                )
                for i, s in enumerate(lengths)
            },
        )
    decay = np.exp(-np.arange(1600) / 200.0)
    write_data_dir(
        data / "rirs",
        {
            f"rir-{i}": _write(root / "rirs" / f"{i}.wav", decay * rng.standard_normal(1600))
            for i in range(2)
        },
    )
    prepare_manifests(data, "train", aug_sets=AUG_SETS, num_threads=1)
    return data


def toy_data_config(**changes) -> DataConfig:
    """Stage 1 settings sized for the toy corpus."""
    settings = dict(
        window_seconds=2.0,
        window_hop_seconds=1.0,
        valid_speakers=2,
        valid_utts_per_speaker=3,
        valid_trials=20,
        backend_utts_per_speaker=2,
        seed=3,
    )
    settings.update(changes)
    return DataConfig(**settings)
