"""Stage 1: training windows, the held-out validation split, the back-end subset and the
augmentation sets, from the manifests of stage 0.

Reads ``data/manifests/<train>_cuts.jsonl.gz``, the Kaldi dir ``data/<train>/`` and
``data/manifests/<aug>_cuts.jsonl.gz``; writes to ``data/``:

- ``manifests/train_windows.jsonl.gz``: fixed-length windows (``window_seconds`` long, one every
  ``window_hop_seconds``) of every utterance of the training speakers, in manifest order. Each
  window is a ``MonoCut`` with id ``<utt>-w<k>`` (k = 0, 1, ... its position in the utterance);
  it keeps the utterance's supervision (so its ``speaker``) and ``custom["utterance"]``.
  **Utterances shorter than one window are skipped** and counted in the log, as the reference
  code could not crop them either; a speaker left without windows is not a training class.
- ``manifests/train_speakers.txt``: the training speakers in C order; line i is class i.
- ``manifests/train_speaker_counts.txt``: ``<speaker> <utterances> <windows>`` in class order,
  for inverse-frequency class weights.
- ``manifests/valid_cuts.jsonl.gz`` and the Kaldi dir ``valid/`` with ``trials_valid``:
  ``valid_utts_per_speaker`` utterances of each of ``valid_speakers`` speakers held out of
  training, and a balanced target/nontarget trial list over them, for model selection.
- ``manifests/backend_cuts.jsonl.gz`` and ``backend/``: at most ``backend_utts_per_speaker``
  utterances of each training speaker, for PLDA, mean subtraction and AS-norm cohorts.
  Stage 4 embeds both whole, so neither takes an utterance shorter than stage 0 requires of
  evaluation utterances (:data:`~oskdft.data.kaldi_dir.MIN_EVAL_SECONDS`); those are counted in
  the log.
- ``manifests/aug_{noise,music,speech,rir}_cuts.jsonl.gz``: the augmentation sources. A set is
  of the kind its name contains (``musan_noise`` -> noise, ``rirs`` -> rir).

Every random choice comes from ``DataConfig.seed``. Cut manifests are streamed, never held whole
in memory, and per-speaker choices are vectorised (VoxCeleb2: 1.09M utterances).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import fastcopy
from numpy.typing import ArrayLike
from tqdm import tqdm

from oskdft.config import DataConfig, load_data_config
from oskdft.data.kaldi_dir import (
    MIN_EVAL_SECONDS,
    DataDir,
    Trial,
    read_data_dir,
    replace_data_dir,
)
from oskdft.layout import (
    aug_cuts_path,
    manifest_path,
    speaker_counts_path,
    train_speakers_path,
    windows_path,
)
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_path, atomic_write

AUG_KINDS = ("noise", "music", "speech", "rir")
VALID_SET = "valid"
BACKEND_SET = "backend"
# Independent random streams of one seed: changing one choice never reshuffles another.
_VALID_SPEAKERS, _VALID_UTTS, _TRIALS, _BACKEND = range(4)


# ---------------------------------------------------------------------------------------------
# Windows


def window_starts(num_samples: int, window: int, hop: int) -> np.ndarray:
    """Start sample of every whole window of ``window`` samples, one every ``hop`` samples.

    >>> window_starts(5 * 16000, 2 * 16000, 16000) // 16000  # a 5 s utterance: 2 s every 1 s
    array([0, 1, 2, 3])
    >>> window_starts(31999, 32000, 16000).size  # shorter than one window: none
    0
    """
    return np.arange(int(num_windows(num_samples, window, hop)), dtype=np.int64) * hop


def window_id(utterance_id: str, index: int) -> str:
    """``<utt>-w<k>``: still starts with the speaker id, like the utterance id.

    >>> window_id("id10001-abc-00001", 3)
    'id10001-abc-00001-w0003'
    """
    return f"{utterance_id}-w{index:04d}"


def cut_windows(cut: Cut, window_seconds: float, hop_seconds: float) -> List[Cut]:
    """The windows of one utterance cut (none when it is shorter than a window)."""
    rate = cut.sampling_rate
    window, hop = round(window_seconds * rate), round(hop_seconds * rate)
    return [
        cut.truncate(offset=start / rate, duration=window / rate, preserve_id=True)
        .with_id(window_id(cut.id, k))
        .with_custom("utterance", cut.id)
        for k, start in enumerate(window_starts(cut.num_samples, window, hop))
    ]


def shift_window(first: Cut, start: float, index: int) -> Cut:
    """Window ``index`` of an utterance, made from its first window: the same cut moved to
    ``start`` (seconds in the recording). Equal to what :func:`cut_windows` writes, which lets
    the training dataset keep one cut per utterance instead of one per window."""
    delta = start - first.start
    return fastcopy(
        first,
        id=window_id(first.custom["utterance"], index),
        start=start,
        supervisions=[s.with_offset(-delta) for s in first.supervisions],
    )


# ---------------------------------------------------------------------------------------------
# Speaker-level choices (vectorised over utterances)


def sample_per_speaker(
    speakers: np.ndarray,
    max_per_speaker: int,
    rng: np.random.Generator,
    eligible: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Boolean mask choosing at most ``max_per_speaker`` random utterances of every speaker,
    among the ``eligible`` ones (default: all). The draw is the same as with all eligible, but
    for the ineligible utterances it would have chosen.

    :param speakers: speaker code of every utterance.

    >>> mask = sample_per_speaker(np.array([0, 0, 0, 1, 2, 2]), 2, np.random.default_rng(0))
    >>> [int(mask[[0, 1, 2]].sum()), int(mask[3]), int(mask[[4, 5]].sum())]
    [2, 1, 2]
    """
    if eligible is None:
        eligible = np.ones(len(speakers), dtype=bool)
    # By speaker, the eligible first, then at random.
    order = np.lexsort((rng.random(len(speakers)), ~eligible, speakers))
    sorted_speakers = speakers[order]
    group_start = np.flatnonzero(np.r_[True, sorted_speakers[1:] != sorted_speakers[:-1]])
    group_sizes = np.diff(np.r_[group_start, len(order)])
    rank = np.arange(len(order)) - np.repeat(group_start, group_sizes)
    mask = np.zeros(len(speakers), dtype=bool)
    mask[order[rank < max_per_speaker]] = True
    return mask & eligible


def sample_balanced_trials(
    utterances: Sequence[str], speakers: np.ndarray, num_trials: int, rng: np.random.Generator
) -> List[Trial]:
    """A balanced trial list: ``num_trials // 2`` same-speaker pairs and as many
    different-speaker pairs, each unordered pair at most once, sorted (C order). When the
    utterances allow fewer target pairs, both halves shrink to that number.

    >>> utts = ["a-1", "a-2", "b-1", "b-2"]
    >>> trials = sample_balanced_trials(utts, np.array([0, 0, 1, 1]), 10, np.random.default_rng(0))
    >>> sum(t[2] for t in trials), sum(not t[2] for t in trials)
    (2, 2)
    """
    speakers = np.asarray(speakers)
    order = np.argsort(speakers, kind="stable")
    bounds = np.flatnonzero(np.r_[True, speakers[order][1:] != speakers[order][:-1], True])
    target_pairs = []
    for lo, hi in pairwise(bounds):
        i, j = np.triu_indices(hi - lo, k=1)
        target_pairs.append(np.stack([order[lo + i], order[lo + j]], axis=1))
    targets = np.concatenate(target_pairs) if target_pairs else np.zeros((0, 2), np.int64)
    n = len(utterances)
    num_nontarget_pairs = n * (n - 1) // 2 - len(targets)
    count = min(num_trials // 2, len(targets), num_nontarget_pairs)
    targets = targets[rng.choice(len(targets), count, replace=False)]
    nontargets = _sample_nontarget_pairs(speakers, count, rng)
    trials = []
    for pairs, is_target in ((targets, True), (nontargets, False)):
        for a, b in pairs:
            first, second = sorted((str(utterances[a]), str(utterances[b])))
            trials.append((first, second, is_target))
    return sorted(trials)


def _sample_nontarget_pairs(
    speakers: np.ndarray, count: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` distinct unordered pairs of utterances of different speakers, by rejection
    sampling in vectorised rounds (never the O(N^2) list of all pairs)."""
    n = len(speakers)
    codes = np.zeros(0, dtype=np.int64)
    while len(codes) < count:
        a, b = rng.integers(n, size=(2, 2 * count + 64))
        keep = speakers[a] != speakers[b]
        lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
        drawn = np.concatenate([codes, lo * n + hi])
        _, first = np.unique(drawn, return_index=True)
        codes = drawn[np.sort(first)]  # distinct, in the order drawn (so a random subset)
    codes = codes[:count]
    return np.stack([codes // n, codes % n], axis=1)


# ---------------------------------------------------------------------------------------------
# Stage 1


@dataclass
class UtteranceTable:
    """One row per utterance of the training manifest, in manifest order."""

    ids: np.ndarray  # str
    speakers: np.ndarray  # str
    num_samples: np.ndarray  # int64


@dataclass
class WindowStats:
    """What stage 1 made (also logged)."""

    train_speakers: int
    train_utterances: int
    windows: int
    skipped_short: int
    valid_speakers: int
    valid_utterances: int
    valid_trials: int
    backend_utterances: int
    too_short_to_embed: int  # neither in the validation nor in the back-end set


def make_windows(
    data_dir: Pathlike, data_config: Pathlike, train_set: str, aug_sets: Sequence[str] = ()
) -> WindowStats:
    """Stage 1 (see the module docstring): read ``<data_dir>/manifests`` and the config file
    ``data_config``, write the windows, the validation and back-end subsets, the aug sets."""
    return make_windows_from_config(
        data_dir, load_data_config(data_config), train_set, aug_sets, config_path=data_config
    )


def make_windows_from_config(
    data_dir: Pathlike,
    cfg: DataConfig,
    train_set: str,
    aug_sets: Sequence[str] = (),
    config_path: Pathlike = "data config",
) -> WindowStats:
    """:func:`make_windows` with the configuration given as an object. Every check runs
    before the first file is written, so bad input leaves earlier outputs as they were."""
    data_dir = Path(data_dir)
    aug_manifests = {name: manifest_path(data_dir, name, "cuts") for name in aug_sets}
    for name, path in aug_manifests.items():
        aug_kind(name)
        if not path.is_file():
            raise InputError(
                path, "manifest not found", hint="list the set in stage 0's --aug-sets"
            )
    cuts_path = manifest_path(data_dir, train_set, "cuts")
    table = read_utterance_table(cuts_path, cfg.sample_rate)
    speaker_names, speakers = np.unique(table.speakers, return_inverse=True)

    # Stage 4 embeds the validation and back-end utterances whole: a shorter one than an
    # evaluation utterance may be has no embedding (or one that means nothing).
    embeddable = table.num_samples >= round(MIN_EVAL_SECONDS * cfg.sample_rate)
    held_out = choose_valid_speakers(speakers, embeddable, cfg, config_path)
    is_valid_speaker = np.isin(speakers, held_out)
    valid_rng = np.random.default_rng([cfg.seed, _VALID_UTTS])
    in_valid = is_valid_speaker & sample_per_speaker(
        speakers, cfg.valid_utts_per_speaker, valid_rng, embeddable
    )
    backend_rng = np.random.default_rng([cfg.seed, _BACKEND])
    in_backend = ~is_valid_speaker & sample_per_speaker(
        speakers, cfg.backend_utts_per_speaker, backend_rng, embeddable
    )
    trials = sample_balanced_trials(
        table.ids[in_valid],
        speakers[in_valid],
        cfg.valid_trials,
        np.random.default_rng([cfg.seed, _TRIALS]),
    )
    window = round(cfg.window_seconds * cfg.sample_rate)
    hop = round(cfg.window_hop_seconds * cfg.sample_rate)
    windows = np.where(is_valid_speaker, 0, num_windows(table.num_samples, window, hop))
    classes = _training_classes(speaker_names, speakers, windows, ~is_valid_speaker, cuts_path)
    kaldi = read_data_dir(data_dir / train_set)
    _check_in_data_dir(kaldi, table.ids[in_valid | in_backend], cuts_path)

    selected = {VALID_SET: set(table.ids[in_valid]), BACKEND_SET: set(table.ids[in_backend])}
    written = _write_cut_subsets(
        data_dir, cuts_path, cfg, selected, train_ids=set(table.ids[windows > 0])
    )
    assert written == windows.sum(), "window count differs from the plan"
    _write_speaker_lists(data_dir, classes)
    write_subset_dir(data_dir / VALID_SET, kaldi, table.ids[in_valid], {"valid": trials})
    write_subset_dir(data_dir / BACKEND_SET, kaldi, table.ids[in_backend])
    write_aug_sets(data_dir, aug_sets)

    stats = WindowStats(
        train_speakers=len(classes["speaker"]),
        train_utterances=int(classes["utterances"].sum()),
        windows=int(windows.sum()),
        skipped_short=int(np.sum(~is_valid_speaker & (windows == 0))),
        valid_speakers=len(held_out),
        valid_utterances=int(in_valid.sum()),
        valid_trials=len(trials),
        backend_utterances=int(in_backend.sum()),
        too_short_to_embed=int(np.sum(~embeddable)),
    )
    logging.info(
        "stage 1: %d training speakers, %d utterances -> %d windows (%.1f s every %.1f s; "
        "%d utterances shorter than a window skipped); validation: %d held-out speakers, "
        "%d utterances, %d trials; back end: %d utterances; %d utterances shorter than %g s "
        "in neither",
        stats.train_speakers,
        stats.train_utterances,
        stats.windows,
        cfg.window_seconds,
        cfg.window_hop_seconds,
        stats.skipped_short,
        stats.valid_speakers,
        stats.valid_utterances,
        stats.valid_trials,
        stats.backend_utterances,
        stats.too_short_to_embed,
        MIN_EVAL_SECONDS,
    )
    logging.info(
        "speakers held out for validation: %s",
        " ".join(speaker_names[held_out][:20]) + (" ..." if len(held_out) > 20 else ""),
    )
    return stats


def num_windows(num_samples: ArrayLike, window: int, hop: int) -> np.ndarray:
    """Windows of each utterance (vectorised :func:`window_starts` sizes).

    >>> num_windows(np.array([31999, 32000, 52800, 64000]), 32000, 16000).tolist()
    [0, 1, 2, 3]
    """
    num_samples = np.asarray(num_samples, dtype=np.int64)
    return np.where(num_samples >= window, (num_samples - window) // hop + 1, 0)


def read_utterance_table(cuts_path: Path, sample_rate: int) -> UtteranceTable:
    """Ids, speakers and lengths of every cut of a manifest, streamed."""
    if not cuts_path.is_file():
        raise InputError(cuts_path, "manifest not found", hint="run stage 0 first")
    ids, speakers, num_samples = [], [], []
    for line, cut in enumerate(CutSet.from_jsonl_lazy(cuts_path), 1):
        if cut.sampling_rate != sample_rate:
            raise InputError(
                cuts_path,
                f"cut {cut.id} is at {cut.sampling_rate} Hz, not {sample_rate}",
                line=line,
                hint="rerun stage 0, which resamples",
            )
        if not cut.supervisions or cut.supervisions[0].speaker is None:
            raise InputError(
                cuts_path,
                f"cut {cut.id} has no speaker",
                line=line,
                hint="the training set needs utt2spk",
            )
        ids.append(cut.id)
        speakers.append(cut.supervisions[0].speaker)
        num_samples.append(cut.num_samples)
    if not ids:
        raise InputError(cuts_path, "no cuts in the training manifest")
    return UtteranceTable(np.array(ids), np.array(speakers), np.array(num_samples, np.int64))


def choose_valid_speakers(
    speakers: np.ndarray,
    embeddable: np.ndarray,
    cfg: DataConfig,
    config_path: Pathlike = "data config",
) -> np.ndarray:
    """Codes of the ``cfg.valid_speakers`` speakers held out, drawn among those with two or
    more ``embeddable`` utterances (a target trial needs two); at least two speakers stay for
    training."""
    counts = np.bincount(speakers[embeddable], minlength=speakers.max() + 1)
    eligible = np.flatnonzero(counts >= 2)
    if cfg.valid_speakers > min(len(eligible), len(counts) - 2):
        raise InputError(
            config_path,
            f"valid_speakers={cfg.valid_speakers} is too many: the training set has "
            f"{len(counts)} speakers, {len(eligible)} of them with 2+ utterances of "
            f"{MIN_EVAL_SECONDS} s or more, and 2 must stay for training",
            hint="lower data.valid_speakers",
        )
    rng = np.random.default_rng([cfg.seed, _VALID_SPEAKERS])
    return np.sort(rng.choice(eligible, cfg.valid_speakers, replace=False))


def _training_classes(
    names: np.ndarray,
    speakers: np.ndarray,
    windows: np.ndarray,
    training: np.ndarray,
    cuts_path: Path,
) -> Dict[str, np.ndarray]:
    """Speakers with at least one window (C order), their utterances with windows and their
    windows. A training speaker whose utterances are all too short is left out, with a warning."""
    utterances = np.bincount(speakers[windows > 0], minlength=len(names))
    window_sum = np.bincount(speakers, weights=windows, minlength=len(names)).astype(np.int64)
    has_windows = window_sum > 0
    if not has_windows.any():
        raise InputError(
            cuts_path,
            "no training utterance is as long as one window",
            hint="lower data.window_seconds",
        )
    training_speakers = np.unique(speakers[training])
    dropped = training_speakers[~has_windows[training_speakers]]
    if len(dropped):
        logging.warning(
            "%d speakers have no utterance as long as a window and are not training classes: %s",
            len(dropped),
            " ".join(names[dropped][:20]),
        )
    # np.unique sorted the names by code point: the C (byte) order of their UTF-8.
    return {
        "speaker": names[has_windows],
        "utterances": utterances[has_windows],
        "windows": window_sum[has_windows],
    }


def _write_cut_subsets(
    data_dir: Path,
    cuts_path: Path,
    cfg: DataConfig,
    selected: Dict[str, set],
    train_ids: set,
) -> int:
    """One streamed pass over the training cuts: windows of ``train_ids`` and the cuts of each
    ``selected`` subset. All files appear together, only when the pass completes.

    :return: the number of windows written.
    """
    targets = {"windows": windows_path(data_dir)}
    targets.update({name: manifest_path(data_dir, name, "cuts") for name in selected})
    written = 0
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(CutSet.open_writer(stack.enter_context(atomic_path(path))))
            for name, path in targets.items()
        }
        cuts = tqdm(CutSet.from_jsonl_lazy(cuts_path), desc="windows", unit="utt", mininterval=10)
        for cut in cuts:
            for name, ids in selected.items():
                if cut.id in ids:
                    writers[name].write(cut)
            if cut.id in train_ids:
                for window in cut_windows(cut, cfg.window_seconds, cfg.window_hop_seconds):
                    writers["windows"].write(window)
                    written += 1
    return written


def _write_speaker_lists(data_dir: Path, classes: Dict[str, np.ndarray]) -> None:
    with atomic_write(train_speakers_path(data_dir)) as f:
        f.writelines(f"{s}\n" for s in classes["speaker"])
    with atomic_write(speaker_counts_path(data_dir)) as f:
        f.writelines(
            f"{s} {u} {w}\n"
            for s, u, w in zip(
                classes["speaker"], classes["utterances"], classes["windows"], strict=True
            )
        )


def _check_in_data_dir(source: DataDir, utterances: Iterable[str], cuts_path: Path) -> None:
    """Every utterance the subsets take from ``source`` must be in its utt2spk: a data dir
    edited after stage 0 is caught before stage 1 writes anything."""
    utt2spk = source.utt2spk or {}
    for utt in utterances:
        if utt not in utt2spk:
            raise InputError(
                source.path / "utt2spk",
                f"utterance {utt!r} is missing, though {cuts_path} has it",
                hint="the data dir changed after stage 0: rerun stage 0",
            )


def write_subset_dir(
    path: Path,
    source: DataDir,
    utterances: Iterable[str],
    trials: Optional[Dict[str, List[Trial]]] = None,
) -> None:
    """A Kaldi data dir of some utterances of ``source`` (a ``DataDir``): its wav.scp lines
    (piped commands kept), utt2spk, spk2utt, segments when the source has them, and trials.
    The directory is replaced whole, so no file of an earlier run lingers."""
    utterances = sorted(utterances)
    utt2spk = None if source.utt2spk is None else {u: source.utt2spk[u] for u in utterances}
    segments = None
    if source.segments is None:
        wav_scp = {utt: source.wav_scp[utt] for utt in utterances}
    else:
        segments = {utt: source.segments[utt] for utt in utterances}
        wav_scp = {s.recording_id: source.wav_scp[s.recording_id] for s in segments.values()}
    replace_data_dir(path, wav_scp, utt2spk, trials, segments)


def aug_kind(set_name: str) -> str:
    """The augmentation kind a set provides: the one of noise, music, speech, rir its name
    contains.

    >>> aug_kind("musan_music"), aug_kind("rirs")
    ('music', 'rir')
    """
    kinds = [kind for kind in AUG_KINDS if kind in set_name]
    if len(kinds) != 1:
        raise InputError(
            set_name,
            f"an augmentation set's name must contain exactly one of "
            f"{', '.join(AUG_KINDS)}; it contains {len(kinds)}",
            hint="rename the set, e.g. musan_noise, musan_music, musan_speech, rirs",
        )
    return kinds[0]


def write_aug_sets(data_dir: Path, aug_sets: Sequence[str]) -> Dict[str, int]:
    """``aug_<kind>_cuts.jsonl.gz`` from the sets' stage-0 cuts (already at 16 kHz);
    sets of the same kind are concatenated. :return: cuts per kind."""
    by_kind: Dict[str, List[str]] = {}
    for name in aug_sets:
        by_kind.setdefault(aug_kind(name), []).append(name)
    counts: Dict[str, int] = {}
    for kind, names in by_kind.items():
        with atomic_path(aug_cuts_path(data_dir, kind)) as tmp, CutSet.open_writer(tmp) as out:
            for name in names:
                for cut in CutSet.from_jsonl_lazy(manifest_path(data_dir, name, "cuts")):
                    out.write(cut)
                    counts[kind] = counts.get(kind, 0) + 1
        logging.info("augmentation %s: %d cuts from %s", kind, counts.get(kind, 0), " ".join(names))
    return counts


# ---------------------------------------------------------------------------------------------
# Readers for stage 3


def read_train_speakers(data_dir: Pathlike) -> List[str]:
    """The training speakers; index i is class i."""
    path = train_speakers_path(data_dir)
    if not path.is_file():
        raise InputError(path, "file not found", hint="run stage 1 first")
    return path.read_text().split()


def speaker_counts(data_dir: Pathlike, unit: str = "utterances") -> np.ndarray:
    """Utterances (one window of each per epoch: the paper's sampling) or windows of every
    training speaker, in class order: the counts inverse-frequency class weights need."""
    column = {"utterances": 1, "windows": 2}
    if unit not in column:
        raise ValueError(f"unit must be one of {', '.join(column)}, got {unit!r}")
    path = speaker_counts_path(data_dir)
    if not path.is_file():
        raise InputError(path, "file not found", hint="run stage 1 first")
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([int(row[column[unit]]) for row in rows], dtype=np.int64)
