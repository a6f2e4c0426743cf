"""Kaldi data directories: the porting interface of every recipe.

A data dir holds ``wav.scp`` (``<utt> <path>`` or ``<utt> <command> |``), ``utt2spk``,
``spk2utt``, optionally ``segments``, and for evaluation sets ``trials_<name>`` files with
``<utt1> <utt2> target|nontarget`` lines. Keys are sorted in C byte order, as Kaldi requires.

Writers (:func:`replace_data_dir`, :func:`import_data_dir`) are used by each recipe's
``prepare.py``; readers and :func:`validate_data_dir` by stage 0, which checks every rule
below and reports the first broken one with the file, the line and what to do:

- every table: ``<key> <value>`` lines, keys sorted (``LC_ALL=C``) and unique;
- utt2spk, segments and wav.scp name the same utterances and recordings; spk2utt, when
  present, agrees with utt2spk;
- every audio file exists, is readable and has samples (header reads only, in parallel);
- every trial names known utterances and says ``target`` or ``nontarget``;
- in a training set, every speaker has at least 2 utterances;
- in an evaluation set, every utterance lasts at least ``min_seconds`` (stage 0's
  ``--min-eval-seconds``, default :data:`MIN_EVAL_SECONDS`): a shorter one has no embedding, or
  one that means nothing, and would otherwise fail in stage 4. Training utterances are not
  refused: stage 1 skips those shorter than a window, and leaves those shorter than this
  minimum out of its validation and back-end sets (:mod:`oskdft.data.windows`).

:func:`import_data_dir` copies an existing Kaldi data dir (and trial lists, Kaldi- or
VoxCeleb-style) into a recipe, which is all a port to a new corpus needs.
"""

from __future__ import annotations

import glob
import logging
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Collection, Dict, Iterable, List, Mapping, Optional, Tuple

from lhotse import Recording
from tqdm import tqdm

from oskdft.data.audio import recording_from_entry
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_dir, atomic_write

Trial = Tuple[str, str, bool]  # (enrolment utt, test utt, is_target)

TRIAL_LABELS = {"target": True, "nontarget": False}
VOXCELEB_LABELS = {"1": True, "0": False}
# Kaldi's extract-segments accepts segments ending this far past their recording (--max-overshoot).
MAX_SEGMENT_OVERSHOOT = 0.5
# Stage 0 refuses evaluation utterances shorter than this: four times the 25 ms that the SSL
# models' CNN (and a 25 ms fbank frame) needs for one frame, so truncated files are caught.
MIN_EVAL_SECONDS = 0.1


@dataclass(frozen=True)
class Segment:
    """One line of ``segments``: an utterance as a time range of a recording."""

    recording_id: str
    start: float
    end: Optional[float]  # None: to the end of the recording (Kaldi writes -1)


@dataclass
class DataDir:
    """A Kaldi data dir read into memory by :func:`read_data_dir`."""

    path: Path
    wav_scp: Dict[str, str]  # recording id -> path or piped command
    utt2spk: Optional[Dict[str, str]] = None  # None: no speakers (augmentation sources)
    segments: Optional[Dict[str, Segment]] = None  # None: one utterance per recording
    trials: Dict[str, List[Trial]] = field(default_factory=dict)  # name -> trials

    @property
    def utterances(self) -> List[str]:
        """Utterance ids in C order: the segments' keys, else the recordings'."""
        return list(self.segments if self.segments is not None else self.wav_scp)


# ---------------------------------------------------------------------------------------------
# Writing


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
    segments: Optional[Mapping[str, Segment]] = None,
) -> None:
    """Write a Kaldi data dir: wav.scp, and utt2spk + spk2utt when ``utt2spk`` is given,
    segments when ``segments`` is (``wav_scp`` then holds recordings), and one
    ``trials_<name>`` file per entry of ``trials``.

    Augmentation sources (noise, music, RIRs) have no speakers: give ``wav_scp`` only.
    """
    path = Path(path)
    write_table(path / "wav.scp", wav_scp)
    if utt2spk is not None:
        write_table(path / "utt2spk", utt2spk)
        write_table(path / "spk2utt", spk2utt_table(utt2spk))
    if segments is not None:
        write_table(path / "segments", {utt: segment_line(seg) for utt, seg in segments.items()})
    for name, name_trials in (trials or {}).items():
        write_trials(path / f"trials_{name}", name_trials)


def replace_data_dir(
    path: Pathlike,
    wav_scp: Mapping[str, str],
    utt2spk: Optional[Mapping[str, str]] = None,
    trials: Optional[Mapping[str, Iterable[Trial]]] = None,
    segments: Optional[Mapping[str, Segment]] = None,
) -> None:
    """:func:`write_data_dir` into a fresh directory that then replaces ``path`` whole, so
    files of an earlier run (a trial list no longer made) do not linger, and an interrupted
    run leaves the old dir intact."""
    with atomic_dir(path) as tmp:
        write_data_dir(tmp, wav_scp, utt2spk, trials, segments)
    utterances = segments if segments is not None else wav_scp
    logging.info(
        "%s: %d utterances%s",
        path,
        len(utterances),
        f", {len(set(utt2spk.values()))} speakers" if utt2spk is not None else "",
    )


def spk2utt_table(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """``spk2utt`` values (space-separated utterances in C order) from ``utt2spk``.

    >>> spk2utt_table({"b-2": "b", "a-1": "a", "b-1": "b"})
    {'a': 'a-1', 'b': 'b-1 b-2'}
    """
    spk2utt = defaultdict(list)
    for utt in sorted(utt2spk):
        spk2utt[utt2spk[utt]].append(utt)
    return {spk: " ".join(utts) for spk, utts in sorted(spk2utt.items())}


# ---------------------------------------------------------------------------------------------
# Reading


def read_table(
    path: Pathlike, num_fields: Optional[int] = None, require_sorted: bool = True
) -> Dict[str, str]:
    """Read ``<key> <value>`` lines into a dict, in file order.

    :param num_fields: fields per line, key included; None: the value is the rest of the line
        (wav.scp, whose commands contain spaces).
    :param require_sorted: reject keys out of C byte order (Kaldi's rule).
    :raises InputError: naming the line of a malformed, duplicate or unsorted key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    table: Dict[str, str] = {}
    previous = None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split(maxsplit=1 if num_fields is None else -1)
            if len(fields) < 2 or (num_fields is not None and len(fields) != num_fields):
                shape = "<key> <value>" if num_fields is None else f"{num_fields} fields"
                raise InputError(path, f"expected {shape}, got {line.strip()!r}", line=line_no)
            key = fields[0]
            if key in table:
                raise InputError(
                    path,
                    f"duplicate key {key!r} (first on line {find_line(path, key)})",
                    line=line_no,
                    hint="remove one of the two lines",
                )
            if require_sorted and previous is not None and key < previous:
                raise InputError(
                    path,
                    f"key {key!r} comes after {previous!r}: not sorted in C byte order",
                    line=line_no,
                    hint=f"sort it with: LC_ALL=C sort -o {path} {path}",
                )
            table[key] = fields[1].strip() if num_fields is None else " ".join(fields[1:])
            previous = key
    return table


def read_segments(path: Pathlike, require_sorted: bool = True) -> Dict[str, Segment]:
    """Read ``<utt> <recording> <start> <end>`` lines (end -1: to the end of the recording)."""
    segments = {}
    table = read_table(path, num_fields=4, require_sorted=require_sorted)
    for line_no, (utt, value) in enumerate(table.items(), 1):
        recording_id, start, end = value.split()
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            raise InputError(
                path, f"start and end of {utt!r} must be seconds", line=line_no
            ) from None
        if start_s < 0 or (end_s != -1 and end_s <= start_s):
            raise InputError(
                path,
                f"segment {utt!r} has start {start} and end {end}",
                line=line_no,
                hint="a segment needs 0 <= start < end (or end -1 for the end of the recording)",
            )
        segments[utt] = Segment(recording_id, start_s, None if end_s == -1 else end_s)
    return segments


def segment_line(segment: Segment) -> str:
    """The value of a ``segments`` line, as :func:`read_segments` reads it back."""
    end = -1 if segment.end is None else segment.end  # Kaldi's "to the end"
    return f"{segment.recording_id} {segment.start} {end}"


def utt_id_from_path(relative_path: str) -> str:
    """The utterance id of a corpus file: its path without suffix, '/' replaced by '-'.

    For VoxCeleb it starts with the speaker id and is unique, unlike the file name:

    >>> utt_id_from_path("id10270/x6uYqmx31kE/00001.wav")
    'id10270-x6uYqmx31kE-00001'
    """
    stem, _ = os.path.splitext(relative_path.replace(os.sep, "/"))
    return stem.strip("/").replace("/", "-")


def read_trials(
    path: Pathlike,
    utterances: Optional[Collection[str]] = None,
    voxceleb_ids: Optional[Callable[[str], str]] = None,
) -> List[Trial]:
    """Read a trial list of ``<utt1> <utt2> target|nontarget`` lines.

    :param utterances: when given, every trial must name two of them.
    :param voxceleb_ids: when given, VoxCeleb-style lines ``1|0 <path1> <path2>`` are accepted
        too, their paths mapped to utterance ids by this function (e.g. :func:`utt_id_from_path`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "trial list not found")
    trials = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) == 3 and fields[2] in TRIAL_LABELS:
                trial = (fields[0], fields[1], TRIAL_LABELS[fields[2]])
            elif len(fields) == 3 and voxceleb_ids is not None and fields[0] in VOXCELEB_LABELS:
                label, enrol, test = fields
                trial = (voxceleb_ids(enrol), voxceleb_ids(test), VOXCELEB_LABELS[label])
            else:
                expected = "'<utt1> <utt2> target|nontarget'" + (
                    " or '1|0 <path1> <path2>'" if voxceleb_ids is not None else ""
                )
                raise InputError(path, f"expected {expected}, got {line.strip()!r}", line=line_no)
            if utterances is not None:
                for utt in trial[:2]:
                    if utt not in utterances:
                        raise InputError(
                            path,
                            f"trial names unknown utterance {utt!r}",
                            line=line_no,
                            hint="every trial utterance must be in the data dir's wav.scp "
                            "(or segments): add it, or drop the trial",
                        )
            trials.append(trial)
    if not trials:
        raise InputError(path, "trial list is empty")
    return trials


def read_data_dir(path: Pathlike, require_speakers: bool = True) -> DataDir:
    """Read and cross-check the text files of a data dir (no audio is opened).

    :param require_speakers: utt2spk must exist (training and evaluation sets).
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "data dir not found", hint="run the recipe's prepare.py first")
    wav_scp = read_table(path / "wav.scp")
    if not wav_scp:
        raise InputError(
            path / "wav.scp", "no recordings", hint="is prepare.py's corpus path right?"
        )
    segments = read_segments(path / "segments") if (path / "segments").exists() else None
    if segments is not None:
        for utt, segment in segments.items():
            if segment.recording_id not in wav_scp:
                raise InputError(
                    path / "segments",
                    f"recording {segment.recording_id!r} is not in wav.scp",
                    line=find_line(path / "segments", utt),
                )
    data = DataDir(path=path, wav_scp=wav_scp, segments=segments)
    utterances = set(data.utterances)
    if (path / "utt2spk").exists():
        data.utt2spk = read_table(path / "utt2spk", num_fields=2)
        utt_file = path / ("segments" if segments is not None else "wav.scp")
        _check_same_keys(path / "utt2spk", data.utt2spk, utt_file, utterances)
        if (path / "spk2utt").exists():
            _check_spk2utt(path / "spk2utt", data.utt2spk)
    elif require_speakers:
        raise InputError(
            path / "utt2spk",
            "file not found",
            hint="write '<utt> <speaker>' lines; with unknown speakers, map each utterance to "
            "itself (Kaldi's convention)",
        )
    for trials_file in sorted(path.glob("trials_*")):
        data.trials[trials_file.name[len("trials_") :]] = read_trials(trials_file, utterances)
    return data


def find_line(path: Pathlike, key: str) -> Optional[int]:
    """The 1-based line of ``path`` whose first field is ``key`` (for error messages only)."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.split(maxsplit=1)[:1] == [key]:
                return line_no
    return None


def _check_same_keys(
    utt2spk_path: Path, utt2spk: Mapping[str, str], utt_path: Path, utterances: Collection[str]
) -> None:
    fix = "keep utt2spk and wav.scp/segments in step (Kaldi's utils/fix_data_dir.sh drops both)"
    for utt in utt2spk:
        if utt not in utterances:
            raise InputError(
                utt2spk_path,
                f"utterance {utt!r} is not in {utt_path.name}",
                line=find_line(utt2spk_path, utt),
                hint=fix,
            )
    if len(utt2spk) != len(utterances):
        missing = next(utt for utt in sorted(utterances) if utt not in utt2spk)
        raise InputError(
            utt_path,
            f"utterance {missing!r} has no speaker in utt2spk",
            line=find_line(utt_path, missing),
            hint=fix,
        )


def _check_spk2utt(path: Path, utt2spk: Mapping[str, str]) -> None:
    expected = spk2utt_table(utt2spk)
    found = read_table(path, require_sorted=True)
    for spk in sorted(set(expected) | set(found)):
        if set(found.get(spk, "").split()) != set(expected.get(spk, "").split()):
            raise InputError(
                path,
                f"speaker {spk!r} disagrees with utt2spk",
                line=find_line(path, spk),
                hint="delete spk2utt (it is derived from utt2spk) or regenerate it with "
                "Kaldi's utils/utt2spk_to_spk2utt.pl",
            )


# ---------------------------------------------------------------------------------------------
# Validation


def check_utts_per_speaker(data_dir: Path, utt2spk: Mapping[str, str], min_utts: int) -> None:
    """Every speaker of the data dir ``data_dir`` must have at least ``min_utts`` utterances."""
    counts = Counter(utt2spk.values())
    few = sorted(spk for spk, count in counts.items() if count < min_utts)
    if not few:
        return
    spk = few[0]
    first_utt = next(utt for utt, s in utt2spk.items() if s == spk)
    others = f" ({len(few) - 1} more speakers too)" if len(few) > 1 else ""
    raise InputError(
        data_dir / "utt2spk",
        f"speaker {spk!r} has {counts[spk]} utterance(s); training needs at least "
        f"{min_utts} per speaker{others}",
        line=find_line(data_dir / "utt2spk", first_utt),
        hint="drop such speakers from the training set in prepare.py",
    )


def probe_recordings(data: DataDir, num_threads: int = 8) -> Dict[str, Recording]:
    """Read the header of every recording of wav.scp (runs piped commands), in parallel.

    Header reads wait on the disk, so threads overlap them; soundfile releases the GIL.

    :raises InputError: naming the wav.scp line of the first missing, unreadable or empty
        recording, and how many more there are.
    """
    wav_scp = data.path / "wav.scp"
    recordings: Dict[str, Recording] = {}
    errors: List[Tuple[str, InputError]] = []

    def probe(item: Tuple[str, str]):
        try:
            return recording_from_entry(*item)
        except InputError as e:
            return e

    items = iter(data.wav_scp.items())
    # A few thousand at a time: a failure stops soon, and no million futures are queued.
    with (
        ThreadPoolExecutor(num_threads) as pool,
        tqdm(
            total=len(data.wav_scp),
            desc=f"{data.path.name}: audio headers",
            unit="file",
            disable=len(data.wav_scp) < 10000,
            mininterval=5,
        ) as progress,
    ):
        while batch := list(islice(items, 4096)):
            for (rec_id, _), result in zip(batch, pool.map(probe, batch), strict=True):
                if isinstance(result, InputError):
                    errors.append((rec_id, result))
                else:
                    recordings[rec_id] = result
            progress.update(len(batch))
    if errors:
        rec_id, first = errors[0]
        more = ""
        if len(errors) > 1:
            lines = ", ".join(str(find_line(wav_scp, r)) for r, _ in errors[1:6])
            etc = ", ..." if len(errors) > 6 else ""
            more = f"; {len(errors) - 1} more bad entries, on lines {lines}{etc}"
        raise InputError(
            wav_scp,
            f"{rec_id}: {first.problem}: {first.path}{more}",
            line=find_line(wav_scp, rec_id),
            hint=first.hint,
        )
    return recordings


def check_segments(data: DataDir, recordings: Mapping[str, Recording]) -> None:
    """Segments must end within their recording (up to Kaldi's 0.5 s overshoot)."""
    for utt, segment in (data.segments or {}).items():
        duration = recordings[segment.recording_id].duration
        if segment.start >= duration or (
            segment.end is not None and segment.end > duration + MAX_SEGMENT_OVERSHOOT
        ):
            raise InputError(
                data.path / "segments",
                f"segment {utt!r} ({segment.start}-{segment.end} s) lies outside recording "
                f"{segment.recording_id!r} ({duration:.3f} s)",
                line=find_line(data.path / "segments", utt),
                hint="fix or drop the segment",
            )


def validate_data_dir(
    path: Pathlike,
    require_speakers: bool = True,
    require_trials: bool = False,
    min_utts_per_speaker: int = 0,
    num_threads: int = 8,
    min_seconds: float = 0.0,
) -> Tuple[DataDir, Dict[str, Recording]]:
    """Check every rule of a data dir (see the module docstring) and probe its audio.

    :param require_speakers: utt2spk must exist (training and evaluation sets).
    :param require_trials: at least one ``trials_*`` file must exist (evaluation sets).
    :param min_utts_per_speaker: the training set's minimum (2: a speaker needs a pair).
    :param min_seconds: the shortest utterance allowed (evaluation sets).
    :return: the data dir and its recordings (id -> lhotse Recording, at the file's own rate).
    """
    data = read_data_dir(path, require_speakers=require_speakers)
    if require_trials and not data.trials:
        raise InputError(
            data.path / "trials_<name>",
            "an evaluation set needs at least one trial list",
            hint="write '<utt1> <utt2> target|nontarget' lines to trials_<name> in prepare.py",
        )
    if min_utts_per_speaker and data.utt2spk is not None:
        check_utts_per_speaker(data.path, data.utt2spk, min_utts_per_speaker)
    if data.utt2spk is not None:
        strays = sum(not utt.startswith(spk) for utt, spk in data.utt2spk.items())
        if strays:
            logging.warning(
                "%s: %d utterance ids do not start with their speaker id (Kaldi's "
                "convention, which keeps utt2spk and spk2utt in one order)",
                data.path / "utt2spk",
                strays,
            )
    recordings = probe_recordings(data, num_threads=num_threads)
    check_segments(data, recordings)
    check_durations(data, recordings, min_seconds)
    return data, recordings


def utterance_seconds(data: DataDir, recordings: Mapping[str, Recording]) -> Dict[str, float]:
    """The duration of every utterance: its recording's, or its segment's (clipped to the
    recording, as stage 0's cuts are)."""
    if data.segments is None:
        return {utt: recordings[utt].duration for utt in data.wav_scp}
    durations = {}
    for utt, segment in data.segments.items():
        end = recordings[segment.recording_id].duration
        durations[utt] = (end if segment.end is None else min(segment.end, end)) - segment.start
    return durations


def check_durations(data: DataDir, recordings: Mapping[str, Recording], min_seconds: float) -> None:
    """Every utterance must last ``min_seconds`` or more.

    :raises InputError: naming the line (of segments, else wav.scp) of the first shorter
        utterance, its duration, and how many more there are.
    """
    short = [
        (utt, seconds)
        for utt, seconds in utterance_seconds(data, recordings).items()
        if seconds < min_seconds
    ]
    if not short:
        return
    utt, seconds = short[0]
    table = data.path / ("segments" if data.segments is not None else "wav.scp")
    more = f"; {len(short) - 1} more utterances are too" if len(short) > 1 else ""
    raise InputError(
        table,
        f"utterance {utt!r} lasts {seconds:.3f} s, shorter than the "
        f"{min_seconds:g} s an evaluation utterance needs{more}",
        line=find_line(table, utt),
        hint="drop such utterances (and their trials) in prepare.py, or lower "
        "--min-eval-seconds of local/prepare_manifests.py",
    )


# ---------------------------------------------------------------------------------------------
# Building data dirs from corpora and existing Kaldi dirs


def scan_audio_tree(root: Pathlike, pattern: str) -> Dict[str, str]:
    """Map utterance id (:func:`utt_id_from_path` of the path below ``root``) -> absolute path
    for every file under ``root`` matching the glob ``pattern`` (``**`` recurses).

    Hidden files (a conversion's temporary names) are skipped.

    :raises InputError: when nothing matches, or two files get the same id.
    """
    root = Path(os.path.abspath(root))
    table: Dict[str, str] = {}
    for path in sorted(glob.glob(str(root / pattern), recursive=True)):
        utt = utt_id_from_path(os.path.relpath(path, root))
        if utt in table:
            raise InputError(
                path,
                f"has the same utterance id {utt!r} as {table[utt]}",
                hint="rename one of the two files",
            )
        table[utt] = path
    if not table:
        raise InputError(root, f"no audio files match {pattern!r}", hint="check the corpus path")
    return table


def import_data_dir(
    src: Pathlike,
    dst: Pathlike,
    trials: Optional[Mapping[str, Pathlike]] = None,
) -> None:
    """Copy an existing Kaldi data dir into a recipe: wav.scp, utt2spk (spk2utt is
    regenerated), segments when present, plus trial lists converted to ``trials_<name>``.

    The source tables may be unsorted (they are written sorted) but not have duplicate keys.
    Relative paths in wav.scp are kept as they are: make them absolute first.

    :param src: the existing data dir (wav.scp, and utt2spk and segments when it has them).
    :param dst: the recipe's data dir to write, e.g. ``data/test``; replaced as a whole.
    :param trials: name -> trial list, in Kaldi form ``<utt1> <utt2> target|nontarget`` or
        VoxCeleb form ``1|0 <spk>/<video>/<n>.wav ...`` (paths mapped by
        :func:`utt_id_from_path`); every trial must name an utterance of ``src``.
    """
    src = Path(src)
    wav_scp = read_table(src / "wav.scp", require_sorted=False)
    utt2spk = (
        read_table(src / "utt2spk", num_fields=2, require_sorted=False)
        if (src / "utt2spk").exists()
        else None
    )
    segments = (
        read_segments(src / "segments", require_sorted=False)
        if (src / "segments").exists()
        else None
    )
    utterances = set(segments if segments is not None else wav_scp)
    converted = {
        name: read_trials(trial_path, utterances, voxceleb_ids=utt_id_from_path)
        for name, trial_path in (trials or {}).items()
    }
    replace_data_dir(dst, wav_scp, utt2spk, converted, segments)
