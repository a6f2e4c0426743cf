"""Trial lists, Kaldi tables and score files.

A trial list has one ``<utt1> <utt2> target|nontarget`` line per trial (Kaldi's form); a score
file adds the score: ``<utt1> <utt2> <score> target|nontarget``. Trial ``i`` is line ``i + 1``,
so errors can name the line of a trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np

from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

LABELS = {"target": True, "nontarget": False}
TRIAL_FORMAT = "expected `<utt1> <utt2> target|nontarget` on every line"


class Trials(NamedTuple):
    """A trial list: enrolment ids, test ids and ``labels`` (True for target trials)."""

    enrol: List[str]
    test: List[str]
    labels: np.ndarray


def read_trials(path: Pathlike) -> Trials:
    """Read a Kaldi trial list; a malformed line is an error naming it.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "trials"
    >>> _ = p.write_text("a1 b1 nontarget\\na1 a2 target\\n")
    >>> enrol, test, labels = read_trials(p)
    >>> enrol, test, labels.tolist()
    (['a1', 'a1'], ['b1', 'a2'], [False, True])
    """
    if not Path(path).is_file():
        raise InputError(
            path,
            "trial list not found",
            hint="stage 0 writes the evaluation sets' lists, stage 1 trials_valid",
        )
    enrol, test, labels = [], [], []
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[2] not in LABELS:
                raise InputError(
                    path, f"bad trial {line.strip()!r}", line=line_no, hint=TRIAL_FORMAT
                )
            enrol.append(fields[0])
            test.append(fields[1])
            labels.append(LABELS[fields[2]])
    if not labels:
        raise InputError(path, "no trials", hint=TRIAL_FORMAT)
    return Trials(enrol, test, np.array(labels, dtype=bool))


def trial_rows(
    trials_path: Pathlike, trials: Trials, index: Mapping[str, int], source: Pathlike
) -> Tuple[np.ndarray, np.ndarray]:
    """Row numbers of every trial's enrolment and test utterance in an embedding table.

    :param index: utterance id -> row, from the embeddings in ``source`` (named in errors).
    :return: ``(enrol_rows, test_rows)``, int64 arrays.
    :raises InputError: some utterance has no embedding; the message names the trial list, the
        first line concerned and the missing ids (count and first few).
    """
    enrol = np.array([index.get(u, -1) for u in trials.enrol], dtype=np.int64)
    test = np.array([index.get(u, -1) for u in trials.test], dtype=np.int64)
    missing = (enrol < 0) | (test < 0)
    if missing.any():
        ids = sorted({u for u in trials.enrol + trials.test if u not in index})
        first = int(np.argmax(missing))
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        raise InputError(
            trials_path,
            f"{len(ids)} utterance(s) have no embedding in {source}: {shown}",
            line=first + 1,
            hint="re-run stage 4 for this set, or remove these trials",
        )
    return enrol, test


def write_scores(path: Pathlike, trials: Trials, scores: np.ndarray) -> None:
    """Write ``<utt1> <utt2> <score> target|nontarget`` lines in trial order, atomically."""
    label_names = np.where(trials.labels, "target", "nontarget")
    lines = [
        f"{e} {t} {s:.6f} {lab}\n"
        for e, t, s, lab in zip(
            trials.enrol, trials.test, scores.tolist(), label_names, strict=True
        )
    ]
    with atomic_write(path) as f:
        f.writelines(lines)


def read_scores(path: Pathlike) -> Tuple[Trials, np.ndarray]:
    """Read a score file written by :func:`write_scores`: its trials and their scores.

    Parsed as one block (VoxCeleb1-E's 580,000 lines in under a second); only a malformed file
    is read line by line, to name its first bad line.
    """
    if not Path(path).is_file():
        raise InputError(path, "score file not found", hint="run stage 5 for this system")
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    if not lines:
        raise InputError(path, "no scores", hint="run stage 5 for this system")
    fields = np.array(text.split(), dtype=object)
    try:
        if len(fields) != 4 * len(lines):
            raise ValueError("not 4 fields a line")
        labels = np.array([LABELS[label] for label in fields[3::4]], dtype=bool)
        scores = fields[2::4].astype(np.float64)
    except (ValueError, KeyError):
        for line_no, line in enumerate(lines, 1):
            parts = line.split()
            if len(parts) != 4 or parts[3] not in LABELS or not _is_number(parts[2]):
                raise InputError(
                    path,
                    f"bad score line {line.strip()!r}",
                    line=line_no,
                    hint="expected `<utt1> <utt2> <score> target|nontarget`",
                ) from None
        raise
    return Trials(fields[0::4].tolist(), fields[1::4].tolist(), labels), scores


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_table(path: Pathlike, what: str = "value") -> Dict[str, str]:
    """Read a Kaldi table of ``<key> <value>`` lines (utt2spk, utt2dur); keys must be unique."""
    table: Dict[str, str] = {}
    if not Path(path).is_file():
        raise InputError(path, "file not found")
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2:
                raise InputError(
                    path,
                    f"bad line {line.strip()!r}",
                    line=line_no,
                    hint=f"expected `<utt> <{what}>`",
                )
            if fields[0] in table:
                raise InputError(path, f"duplicate key {fields[0]!r}", line=line_no)
            table[fields[0]] = fields[1]
    return table


def read_utt2dur(path: Pathlike, utts: Sequence[str]) -> np.ndarray:
    """Durations in seconds of ``utts``, in that order, from a Kaldi ``utt2dur`` file."""
    table = read_table(path, "seconds")
    missing = [u for u in utts if u not in table]
    if missing:
        raise InputError(
            path,
            f"{len(missing)} utterance(s) missing, e.g. {missing[0]!r}",
            hint="regenerate utt2dur for this data dir",
        )
    durations = np.empty(len(utts))
    for i, utt in enumerate(utts):
        try:
            durations[i] = float(table[utt])
        except ValueError:
            # read_table keeps file order and every line is an entry: the key's line.
            raise InputError(
                path,
                f"duration of {utt!r} is not a number: {table[utt]!r}",
                line=list(table).index(utt) + 1,
            ) from None
    return durations
