"""The results tables: ``exp/results.{md,json}`` over systems, ``results_seeds.{md,json}`` over
seeds.

One row per system, trial list and back end, from each system's ``scores/metrics.json`` and score
files (stage 5) and its ``final/meta.json`` (the trainer: parameter counts, and multiply-accumulates
per second of audio; "-" while absent). Every EER and minDCF gets a 95% interval from a bootstrap
over speakers (:mod:`oskdft.scoring.bootstrap`, speakers from ``data/<set>/utt2spk``), and each
system's EER is compared with the reference system's (``oskdft``) on the same back end by a
paired bootstrap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from oskdft.layout import FINAL_DIR, META_NAME, METRICS_NAME, SCORES_DIR
from oskdft.scoring.bootstrap import (
    LEVEL,
    METHOD,
    METRICS,
    SpeakerBootstrap,
    excludes_zero,
    interval,
)
from oskdft.scoring.trials import read_scores, read_table
from oskdft.utils.done import has_done, stage_hash
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

log = logging.getLogger(__name__)

COLUMNS = (
    "System",
    "Back end",
    "EER (%)",
    "ΔEER vs {reference}",
    "minDCF 0.01",
    "minDCF 0.001",
    "Cllr",
    "min Cllr",
    "SSL params",
    "Total params",
    "GMAC/s SSL",
    "GMAC/s total",
)
RESAMPLES = 1000
REFERENCE = "oskdft"
EMBEDDED = ".stage4.done"  # a system's stage-4 done marker (utils/done.sh)


def scores_hash(system_dir: Pathlike, eval_sets: str) -> str:
    """Stage 5's input hash of one system, which its done marker records: of its stage-4 marker
    and ``eval_sets``, run.conf's string as written. run.sh marks stage 5 with it
    (local/scores_hash.py) and :func:`current_systems` checks it: one rule for both.

    :raises InputError: when stage 4 has not marked the system done.
    """
    stage4 = Path(system_dir) / EMBEDDED
    if not stage4.is_file():
        raise InputError(
            stage4, "missing: stage 4 writes it when it succeeds", hint="run stage 4 first"
        )
    return stage_hash([stage4], [eval_sets])


def current_systems(exp_dir: Pathlike, order: Sequence[str], eval_sets: str) -> List[str]:
    """The systems of the results table: every system under ``exp_dir`` whose scores are current,
    those of ``order`` (run.conf's list) first, then the others by name; a rerun of stage 5 that
    names fewer systems keeps the others' rows. Logs the scored systems left out.

    Scores are current when the system's stage-5 marker records its :func:`scores_hash` (scored
    since its last embeddings, for these sets).
    """
    exp_dir = Path(exp_dir)
    scored = sorted(m.parent.name for m in exp_dir.glob("*/.stage5.done"))
    current: List[str] = []
    stale: List[str] = []
    for system in dict.fromkeys([s for s in order if s in scored] + scored):
        fresh = (exp_dir / system / EMBEDDED).is_file() and has_done(
            exp_dir / system, "stage5", scores_hash(exp_dir / system, eval_sets)
        )
        (current if fresh else stale).append(system)
    if stale:
        log.info(
            "not in the results table (not scored since their last embeddings): %s", " ".join(stale)
        )
    return current


def make_results(
    exp_dir: Pathlike,
    data_dir: Pathlike,
    systems: Sequence[str],
    eval_sets: Sequence[str],
    resamples: int = RESAMPLES,
    seed: int = 0,
    reference: str = REFERENCE,
) -> str:
    """Write ``results.md`` and ``results.json`` in ``exp_dir``; return the Markdown.

    Trial lists come in the order of ``eval_sets`` (then by name), systems in the order given,
    back ends in each system's configured order; the best EER of each trial list is in bold.

    :param data_dir: the recipe's data directory (``<set>/utt2spk``: the trials' speakers).
    :param resamples: bootstrap resamples per trial list, shared by every system and back end.
    :param seed: seeds the resamples.
    :param reference: the system the others are compared with (no comparison when absent).
    """
    exp_dir, data_dir = Path(exp_dir), Path(data_dir)
    rows: List[Dict[str, Any]] = []
    for system in systems:
        metrics = _read_json(
            exp_dir / system / SCORES_DIR / METRICS_NAME,
            hint="run stage 5 (local/score_trials.py) for this system",
        )
        meta_path = exp_dir / system / FINAL_DIR / META_NAME
        meta = _read_json(meta_path, hint="written by training") if meta_path.is_file() else {}
        params = meta.get("params") or {}
        macs = meta.get("macs_per_second") or {}
        for name, entry in metrics["trial_lists"].items():
            if entry["set"] not in eval_sets:
                continue
            for backend, result in entry["results"].items():
                rows.append(
                    {
                        "system": system,
                        "set": entry["set"],
                        "trial_list": name,
                        "backend": backend,
                        **{
                            key: result.get(key)
                            for key in (
                                "eer",
                                "min_dcf_0.01",
                                "min_dcf_0.001",
                                "cllr",
                                "min_cllr",
                                "num_trials",
                            )
                        },
                        "ssl_params": params.get("ssl"),
                        "total_params": params.get("total"),
                        "macs_per_second_ssl": macs.get("ssl"),
                        "macs_per_second_total": macs.get("total"),
                    }
                )
    # Stable sort: systems and back ends keep their order within each trial list.
    rows.sort(key=lambda r: (list(eval_sets).index(r["set"]), r["trial_list"]))
    compared: Optional[str] = reference
    if reference not in systems:
        log.info("no %s among the systems: the table compares none", reference)
        compared = None
    for group in _by_trial_list(rows):
        _add_intervals(group, exp_dir, data_dir, resamples, seed, compared)
    bootstrap = {
        "method": METHOD,
        "resamples": resamples,
        "seed": seed,
        "level": LEVEL,
        "reference": compared,
    }
    with atomic_write(exp_dir / "results.json") as f:
        json.dump(
            {
                "systems": list(systems),
                "eval_sets": list(eval_sets),
                "bootstrap": bootstrap,
                "rows": rows,
            },
            f,
            indent=2,
        )
        f.write("\n")
    markdown = render_markdown(rows, bootstrap)
    with atomic_write(exp_dir / "results.md") as f:
        f.write(markdown)
    return markdown


def _by_trial_list(rows: Sequence[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
    lists = list(dict.fromkeys((r["set"], r["trial_list"]) for r in rows))
    return [[r for r in rows if (r["set"], r["trial_list"]) == key] for key in lists]


def _add_intervals(
    rows: List[Dict[str, Any]],
    exp_dir: Path,
    data_dir: Path,
    resamples: int,
    seed: int,
    reference: Optional[str],
) -> None:
    """Bootstrap intervals of one trial list's rows, and their paired EER difference from the
    reference system's row of the same back end (``eer_diff``, ``eer_diff_ci``,
    ``significant``; None for the reference and where it has no such row)."""
    set_name, name = rows[0]["set"], rows[0]["trial_list"]
    first_path, resampled = None, []
    for row in rows:
        path = exp_dir / row["system"] / SCORES_DIR / f"{name}.{row['backend']}.score"
        trials, scores = read_scores(path)
        if first_path is None:
            first_path, first = path, trials
            utt2spk_path = data_dir / set_name / "utt2spk"
            utt2spk = read_table(utt2spk_path, "speaker")
            missing = sorted({u for u in trials.enrol + trials.test if u not in utt2spk})
            if missing:
                raise InputError(
                    utt2spk_path,
                    f"{len(missing)} utterance(s) of {path} have no speaker, e.g. {missing[0]!r}",
                )
            bootstrap = SpeakerBootstrap(
                [utt2spk[u] for u in trials.enrol],
                [utt2spk[u] for u in trials.test],
                resamples,
                seed,
            )
        elif (
            trials.enrol != first.enrol
            or trials.test != first.test
            or not np.array_equal(trials.labels, first.labels)
        ):
            raise InputError(
                path,
                f"not the trials of {first_path}, in the same order",
                hint="rescore both systems (stage 5) with the same trial list",
            )
        values = bootstrap.metrics(scores, trials.labels)
        for metric in METRICS:
            row[f"{metric}_ci"] = list(interval(values[metric]))
        resampled.append(values["eer"])
    eers = {
        (r["system"], r["backend"]): (r["eer"], v) for r, v in zip(rows, resampled, strict=True)
    }
    for row, eer_draws in zip(rows, resampled, strict=True):
        ref = eers.get((reference, row["backend"]))
        row["eer_diff"] = row["eer_diff_ci"] = row["significant"] = None
        if ref is not None and row["system"] != reference:
            row["eer_diff"] = row["eer"] - ref[0]
            row["eer_diff_ci"] = list(interval(eer_draws - ref[1]))
            row["significant"] = excludes_zero(*row["eer_diff_ci"])


def render_markdown(rows: Sequence[Dict[str, Any]], bootstrap: Dict[str, Any]) -> str:
    """One table per trial list; a system's parameter counts and compute on its first row only."""
    reference = bootstrap["reference"] or REFERENCE
    columns = [c.format(reference=reference) for c in COLUMNS]
    lines = [
        "# Results",
        "",
        "EER in %; minDCF at the given target prior with C_miss = C_fa = 1; Cllr of the scores "
        "calibrated on the validation trials. **Bold**: the best EER of each trial list. "
        f"[Brackets]: {100 * bootstrap['level']:.0f}% confidence intervals, percentiles of "
        f"{bootstrap['resamples']:,} resamples of a {bootstrap['method']} (seed "
        f"{bootstrap['seed']}; oskdft/scoring/bootstrap.py). ΔEER: the EER minus {reference}'s "
        "with the same back end, in points, with the interval of a paired bootstrap (the same "
        "resamples for both); *: the interval excludes 0, the two systems differ. GMAC/s: "
        "multiply-accumulates per second of 16 kHz audio.",
    ]
    for group in _by_trial_list(rows):
        best = min(r["eer"] for r in group)
        lines += _section(
            f"{group[0]['set']}: {group[0]['trial_list']} ({group[0]['num_trials']:,} trials)",
            columns,
        )
        previous = None
        for r in group:
            eer = f"{100 * r['eer']:.2f}"
            first = r["system"] != previous
            previous = r["system"]
            cells = [
                r["system"] if first else "",
                r["backend"],
                (f"**{eer}**" if r["eer"] == best else eer) + _interval(r["eer_ci"], 100, 2),
                _difference(r),
                _number(r["min_dcf_0.01"]) + _interval(r["min_dcf_0.01_ci"]),
                _number(r["min_dcf_0.001"]) + _interval(r["min_dcf_0.001_ci"]),
                _number(r["cllr"]),
                _number(r["min_cllr"]),
                _count(r["ssl_params"]) if first else "",
                _count(r["total_params"]) if first else "",
                _gmacs(r["macs_per_second_ssl"]) if first else "",
                _gmacs(r["macs_per_second_total"]) if first else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _interval(bounds: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    return f" [{scale * bounds[0]:.{digits}f}, {scale * bounds[1]:.{digits}f}]"


def _difference(row: Dict[str, Any]) -> str:
    if row["eer_diff"] is None:
        return "-"
    low, high = row["eer_diff_ci"]
    mark = " *" if row["significant"] else ""
    return f"{100 * row['eer_diff']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{mark}"


def seed_dir(exp_dir: Pathlike, seed: int) -> Path:
    """The working directory of one seed of a multi-seed run (``run.sh --seeds``); its own
    ``exp/`` holds that seed's systems and results table."""
    return Path(exp_dir) / f"seed{seed}"


def make_seed_results(exp_dir: Pathlike, seeds: Sequence[int]) -> str:
    """Write ``results_seeds.md`` and ``results_seeds.json`` in ``exp_dir``; return the Markdown.

    Reads each seed's table, ``<seed dir>/exp/results.json`` (:func:`seed_dir`), and gives, per
    trial list, system and back end, the mean and the sample standard deviation over seeds of
    each metric, every seed's EER, and in how many seeds the EER differs significantly from the
    reference system's. A row missing from some seeds' tables is averaged over the others
    (its ``seeds`` says which).
    """
    exp_dir = Path(exp_dir)
    if not seeds:
        raise ValueError("no seeds")
    tables = {
        seed: _read_json(
            seed_dir(exp_dir, seed) / "exp" / "results.json",
            hint=f"run stages 2-5 of seed {seed} (run.sh --seeds)",
        )
        for seed in seeds
    }
    rows: Dict[tuple, Dict[str, Any]] = {}
    for seed, table in tables.items():
        for r in table["rows"]:
            key = (r["set"], r["trial_list"], r["system"], r["backend"])
            rows.setdefault(
                key,
                {
                    "set": r["set"],
                    "trial_list": r["trial_list"],
                    "system": r["system"],
                    "backend": r["backend"],
                    "seeds": [],
                    "values": [],
                },
            )
            rows[key]["seeds"].append(seed)
            rows[key]["values"].append(r)
    summary = []
    for row in rows.values():
        values = row.pop("values")
        for metric in (*METRICS, "eer_diff"):
            numbers = [v[metric] for v in values if v.get(metric) is not None]
            row[metric] = _mean_sd(numbers)
        row["eer_per_seed"] = [v["eer"] for v in values]
        verdicts = [v["significant"] for v in values if v.get("significant") is not None]
        row["significant_seeds"] = sum(verdicts)  # of the seeds compared: len(verdicts)
        row["compared_seeds"] = len(verdicts)
        summary.append(row)
    first = tables[seeds[0]]
    reference = (first.get("bootstrap") or {}).get("reference")
    with atomic_write(exp_dir / "results_seeds.json") as f:
        json.dump({"seeds": list(seeds), "reference": reference, "rows": summary}, f, indent=2)
        f.write("\n")
    markdown = _render_seeds(summary, list(seeds), reference or REFERENCE)
    with atomic_write(exp_dir / "results_seeds.md") as f:
        f.write(markdown)
    return markdown


def _mean_sd(numbers: Sequence[float]) -> Optional[Dict[str, Optional[float]]]:
    """Mean and sample standard deviation (None with fewer than 2 numbers)."""
    if not numbers:
        return None
    sd = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else None
    return {"mean": float(np.mean(numbers)), "sd": sd}


def _render_seeds(rows: Sequence[Dict[str, Any]], seeds: List[int], reference: str) -> str:
    lines = [
        "# Results over seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))} (train.seed; `run.sh --seeds`): mean ± sample "
        "standard deviation over the seeds of each row's metric; EER in %. ΔEER: the EER minus "
        f"{reference}'s with the same back end, in points; significant: in how many seeds its "
        "paired-bootstrap interval excludes 0 (each seed's table: seed<k>/exp/results.md).",
    ]
    columns = (
        "System",
        "Back end",
        "seeds",
        "EER (%)",
        "EER per seed",
        f"ΔEER vs {reference}",
        "significant",
        "minDCF 0.01",
        "minDCF 0.001",
    )
    groups = list(dict.fromkeys((r["set"], r["trial_list"]) for r in rows))
    for set_name, name in groups:
        lines += _section(f"{set_name}: {name}", columns)
        previous = None
        for r in rows:
            if (r["set"], r["trial_list"]) != (set_name, name):
                continue
            first = r["system"] != previous
            previous = r["system"]
            cells = [
                r["system"] if first else "",
                r["backend"],
                str(len(r["seeds"])),
                _mean_sd_cell(r["eer"], 100, 2),
                " ".join(f"{100 * e:.2f}" for e in r["eer_per_seed"]),
                _mean_sd_cell(r["eer_diff"], 100, 2, sign=True),
                f"{r['significant_seeds']}/{r['compared_seeds']}" if r["compared_seeds"] else "-",
                _mean_sd_cell(r["min_dcf_0.01"]),
                _mean_sd_cell(r["min_dcf_0.001"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_sd_cell(
    value: Optional[Dict[str, float]], scale: float = 1.0, digits: int = 3, sign: bool = False
) -> str:
    if value is None:
        return "-"
    mean = f"{scale * value['mean']:{'+' if sign else ''}.{digits}f}"
    return mean if value["sd"] is None else f"{mean} ± {scale * value['sd']:.{digits}f}"


def _read_json(path: Path, hint: str) -> Dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "not found", hint=hint)
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(path, f"not valid JSON: {e}", hint=hint) from e


def _number(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gmacs(value: Optional[int]) -> str:
    """Multiply-accumulates per second in billions, 3 significant digits.

    >>> _gmacs(52_300_000), _gmacs(12_340_000_000), _gmacs(None)
    ('0.0523', '12.3', '-')
    """
    return "-" if value is None else f"{value / 1e9:.3g}"


def _count(value: Optional[int]) -> str:
    """Parameter counts in millions (``63.5M``) or thousands (``812K``).

    >>> _count(63_512_345), _count(812_000), _count(None)
    ('63.5M', '812K', '-')
    """
    if value is None:
        return "-"
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.0f}K"


def _section(title: str, columns: Sequence[str]) -> List[str]:
    """A trial list's heading and its table's header: two text columns, then numbers."""
    return [
        "",
        f"## {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * 2 + "---:|" * (len(columns) - 2),
    ]
