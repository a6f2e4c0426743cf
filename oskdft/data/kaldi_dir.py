"""Kaldi data directories: the porting interface of every recipe.

A data dir holds ``wav.scp`` (``<utt> <path>`` or ``<utt> <command> |``), ``utt2spk``,
``spk2utt``, optionally ``segments``, and for evaluation sets ``trials_<name>`` files with
``<utt1> <utt2> target|nontarget`` lines. Keys are sorted in C byte order, as Kaldi requires.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple

from oskdft.utils.io import Pathlike, atomic_write

Trial = Tuple[str, str, bool]  # (enrolment utt, test utt, is_target)


def write_table(path: Pathlike, table: Mapping[str, str]) -> None:
    """Write ``<key> <value>`` lines sorted by key (C byte order), atomically."""
    with atomic_write(path) as f:
        for key in sorted(table):
            f.write(f"{key} {table[key]}\n")


def write_trials(path: Pathlike, trials: Iterable[Trial]) -> None:
    """Write ``<utt1> <utt2> target|nontarget`` lines in the order given, atomically."""
    with atomic_write(path) as f:
        for enrol, test, is_target in trials:
            f.write(f"{enrol} {test} {'target' if is_target else 'nontarget'}\n")


def write_data_dir(
    path: Pathlike,
    wav_scp: Mapping[str, str],
    utt2spk: Optional[Mapping[str, str]] = None,
    trials: Optional[Mapping[str, Iterable[Trial]]] = None,
) -> None:
    """Write a Kaldi data dir: wav.scp, and utt2spk + spk2utt when ``utt2spk`` is given,
    and one ``trials_<name>`` file per entry of ``trials``.

    Augmentation sources (noise, music, RIRs) have no speakers: give ``wav_scp`` only.
    """
    path = Path(path)
    write_table(path / "wav.scp", wav_scp)
    if utt2spk is not None:
        write_table(path / "utt2spk", utt2spk)
        spk2utt = defaultdict(list)
        for utt in sorted(utt2spk):
            spk2utt[utt2spk[utt]].append(utt)
        write_table(path / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    for name, name_trials in (trials or {}).items():
        write_trials(path / f"trials_{name}", name_trials)
