"""Which job embeds which utterances, and where each job's tables go (no torch: the merge step
uses it too).

Stage 4 splits each set over N jobs by total duration and job ``j`` writes, in
``<embeddings>/<set>/``, the tables ``xvector.j.{ark,scp}`` (one vector per utterance) and
``xvector_crops.j.{ark,scp}`` (a ``num_crops x D`` matrix per utterance), then its marker
``.done.j``. The merge writes ``xvector.scp`` and ``xvector_crops.scp``, whose lines point
into the jobs' arks. A set named full-only (the back-end set: the back ends are fitted on whole
utterances) has no crops table: its crops would cost four times its full view, for nothing.
"""

from __future__ import annotations

import gzip
import heapq
import json
from pathlib import Path
from typing import List, Sequence, Tuple

from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

TABLES = ("xvector", "xvector_crops")


def set_tables(set_name: str, full_only_sets: Sequence[str]) -> Tuple[str, ...]:
    """The tables stage 4 writes for ``set_name``: both, or the full view alone."""
    return TABLES[:1] if set_name in full_only_sets else TABLES


def read_cut_durations(manifest: Pathlike) -> List[Tuple[str, float]]:
    """``(cut id, duration)`` of every cut of a ``jsonl.gz`` cut manifest, in file order,
    read as plain JSON (without lhotse, so the merge stays light)."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(
            manifest,
            "cut manifest not found",
            hint="run stage 0 (evaluation sets) or stage 1 (valid, backend)",
        )
    items = []
    with gzip.open(manifest, "rt") as f:
        for line_number, line in enumerate(f, 1):
            try:
                cut = json.loads(line)
                items.append((cut["id"], float(cut["duration"])))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(
                    manifest,
                    f"not a cut ({e})",
                    line=line_number,
                    hint="rerun the stage that wrote it",
                ) from e
    return items


def split_by_duration(items: Sequence[Tuple[str, float]], num_jobs: int) -> List[List[str]]:
    """Deal ``(id, duration)`` items to ``num_jobs`` jobs, longest first, each to the job with
    the least audio so far (ties: the lowest job). Deterministic; each share keeps the input
    order.

    >>> split_by_duration([("a", 1.0), ("b", 5.0), ("c", 2.0), ("d", 2.5)], 2)
    [['b'], ['a', 'c', 'd']]
    """
    if num_jobs < 1:
        raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
    heap = [(0.0, job) for job in range(num_jobs)]
    owner = {}
    # Longest first, then input position: the order of equal durations is still deterministic.
    for position in sorted(range(len(items)), key=lambda i: (-items[i][1], i)):
        total, job = heapq.heappop(heap)
        owner[position] = job
        heapq.heappush(heap, (total + items[position][1], job))
    shares: List[List[str]] = [[] for _ in range(num_jobs)]
    for position, (key, _) in enumerate(items):
        shares[owner[position]].append(key)
    return shares


def job_table_paths(set_dir: Pathlike, table: str, job: int) -> Tuple[Path, Path]:
    """The ark and scp of job ``job``'s part of ``table``.

    >>> [p.name for p in job_table_paths("emb/test", "xvector", 2)]
    ['xvector.2.ark', 'xvector.2.scp']
    """
    set_dir = Path(set_dir)
    return set_dir / f"{table}.{job}.ark", set_dir / f"{table}.{job}.scp"


def job_marker_path(set_dir: Pathlike, job: int) -> Path:
    """Written by job ``job`` after both of its tables; holds the model's fingerprint."""
    return Path(set_dir) / f".done.{job}"


def check_job_range(job: int, num_jobs: int) -> None:
    if not 1 <= job <= num_jobs:
        raise ValueError(f"--job {job} is not in 1..{num_jobs}")
