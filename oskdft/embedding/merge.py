"""Stage 4, after the jobs: join the jobs' scp files of each set into ``xvector.scp`` and
``xvector_crops.scp`` (the first alone for a full-only set), sorted by utterance id
(``LC_ALL=C`` order); the arks stay where the jobs wrote them.

Every job's part is checked against the utterances the split gave it (recomputed from the
set's manifest), so a job that did not run, failed, or ran with another ``--num-jobs`` is named
with what it lacks, and the merged tables are written only when they hold every utterance of
the set exactly once. Imports no torch: it runs in a fraction of a second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence

from oskdft.embedding.shards import (
    TABLES,
    job_table_paths,
    read_cut_durations,
    set_tables,
    split_by_duration,
)
from oskdft.layout import manifest_path
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.kaldi_io import write_scp_index


def merge_embeddings(
    data_dir: Pathlike,
    embeddings_dir: Pathlike,
    sets: Sequence[str],
    num_jobs: int,
    full_only_sets: Sequence[str] = (),
) -> Dict[str, int]:
    """Merge the job tables of every set in ``sets`` (``full_only_sets``: no crops table).

    :param embeddings_dir: ``exp/<system>/embeddings``; job logs are expected in its ``log/``.
    :return: set -> number of utterances merged.
    :raises InputError: naming the set, each incomplete job and what it lacks.
    """
    counts = {}
    for set_name in sets:
        tables = set_tables(set_name, full_only_sets)
        counts[set_name] = merge_set(data_dir, Path(embeddings_dir), set_name, num_jobs, tables)
        logging.info("%s: %d utterances merged from %d jobs", set_name, counts[set_name], num_jobs)
    return counts


def merge_set(
    data_dir: Pathlike, embeddings_dir: Path, set_name: str, num_jobs: int, tables: Sequence[str]
) -> int:
    utterances = read_cut_durations(manifest_path(data_dir, set_name, "cuts"))
    shares = split_by_duration(utterances, num_jobs)
    set_dir = embeddings_dir / set_name
    merged, problems = {}, []
    for table in tables:
        lines: List[str] = []
        for job, share in enumerate(shares, 1):
            problem = _read_job_lines(set_dir, table, job, share, lines)
            if problem:
                problems.append(f"job {job}: {problem}")
        merged[table] = lines
    if problems:
        raise InputError(
            set_dir,
            f"{len(problems)} incomplete job table(s) of {num_jobs} jobs: " + "; ".join(problems),
            hint="see the extraction jobs' logs (run.sh: exp/log/extract.JOB.log), then rerun "
            "stage 4 (only unfinished jobs run again); --num-jobs must be the extraction's",
        )
    for table, lines in merged.items():
        # The per-job checks already imply this; it is the final guard on what gets written.
        if len(lines) != len(utterances):
            raise InputError(
                set_dir / f"{table}.scp",
                f"{len(lines)} entries for {len(utterances)} utterances of set {set_name}",
            )
        write_scp_index(set_dir / f"{table}.scp", lines)
    for table in set(TABLES) - set(tables):  # an earlier run's, of another model perhaps
        (set_dir / f"{table}.scp").unlink(missing_ok=True)
    return len(utterances)


def _read_job_lines(set_dir: Path, table: str, job: int, share: List[str], lines: List[str]) -> str:
    """Append job ``job``'s scp lines of ``table`` to ``lines``; describe what is wrong, if
    anything ('' when the part holds exactly ``share``)."""
    ark, scp = job_table_paths(set_dir, table, job)
    if not scp.is_file():
        return f"{scp.name} missing ({len(share)} utterances)"
    with open(scp) as f:
        job_lines = [line if line.endswith("\n") else line + "\n" for line in f if line.strip()]
    keys = [line.split(maxsplit=1)[0] for line in job_lines]
    missing = sorted(set(share) - set(keys))
    unexpected = sorted(set(keys) - set(share))
    if missing or unexpected or len(keys) != len(share):
        parts = []
        if missing:
            parts.append(
                f"lacks {len(missing)} of its {len(share)} utterances (e.g. {missing[0]!r})"
            )
        if unexpected:
            parts.append(
                f"has {len(unexpected)} utterances not in its share (e.g. {unexpected[0]!r})"
            )
        if not parts:
            parts.append(f"has {len(keys)} entries for {len(share)} utterances (duplicates)")
        return f"{scp.name} " + " and ".join(parts)
    if share and not ark.is_file():
        return f"{ark.name} missing (its scp points into it)"
    lines.extend(job_lines)
    return ""
