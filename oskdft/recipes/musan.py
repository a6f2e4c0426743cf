"""Augmentation sources as Kaldi data dirs (wav.scp only, no speakers).

- ``musan/{music,noise,speech}/**/*.wav`` -> ``musan_music``, ``musan_noise``, ``musan_speech``
- ``RIRS_NOISES/simulated_rirs/**/*.wav`` -> ``rirs``

Ids are the paths below each set's root without suffix, '/' replaced by '-': RIR file names
repeat across room sizes (``smallroom/Room001/Room001-00001.wav`` and ``mediumroom/...``), so a
file's stem alone is not unique.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

from oskdft.data.kaldi_dir import replace_data_dir, scan_audio_tree
from oskdft.utils.io import Pathlike

MUSAN_PARTS = ("music", "noise", "speech")


def prepare_musan(musan: Pathlike, output_dir: Pathlike) -> List[str]:
    """Write ``<output_dir>/musan_{music,noise,speech}/wav.scp`` from a MUSAN tree.

    :param musan: the MUSAN root, holding ``music/``, ``noise/`` and ``speech/``.
    :return: the names of the sets written.
    """
    for part in MUSAN_PARTS:
        wav_scp = scan_audio_tree(Path(musan) / part, "**/*.wav")
        replace_data_dir(Path(output_dir) / f"musan_{part}", wav_scp)
    return [f"musan_{part}" for part in MUSAN_PARTS]


def prepare_rirs(rirs: Pathlike, output_dir: Pathlike) -> List[str]:
    """Write ``<output_dir>/rirs/wav.scp`` from the simulated room impulse responses.

    :param rirs: the RIRS_NOISES root (holding ``simulated_rirs/``) or ``simulated_rirs``
        itself.
    :return: the names of the sets written.
    """
    root = Path(rirs)
    if (root / "simulated_rirs").is_dir():
        root = root / "simulated_rirs"
    replace_data_dir(Path(output_dir) / "rirs", scan_audio_tree(root, "**/*.wav"))
    return ["rirs"]
