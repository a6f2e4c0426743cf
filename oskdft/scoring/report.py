"""The results table over all systems: ``exp/results.md`` and ``exp/results.json``.

One row per system, trial list and back end, from each system's ``scores/metrics.json`` (stage 5)
and ``final/meta.json`` (the trainer: parameter counts and SSL inference time relative to the
teacher; shown as "-" while absent).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from oskdft.scoring import METRICS_NAME, SCORES_DIR
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

COLUMNS = ("System", "Back end", "EER (%)", "minDCF 0.01", "minDCF 0.001", "Cllr", "min Cllr",
           "SSL params", "Total params", "SSL time (x teacher)")


def make_results(exp_dir: Pathlike, systems: Sequence[str], eval_sets: Sequence[str]) -> str:
    """Write ``results.md`` and ``results.json`` in ``exp_dir``; return the Markdown.

    Trial lists come in the order of ``eval_sets`` (then by name), systems in the order given,
    back ends in each system's configured order; the best EER of each trial list is in bold.
    """
    exp_dir = Path(exp_dir)
    rows: List[Dict[str, Any]] = []
    for system in systems:
        metrics = _read_json(exp_dir / system / SCORES_DIR / METRICS_NAME,
                             hint="run stage 5 (local/score_trials.py) for this system")
        meta_path = exp_dir / system / "final" / "meta.json"
        meta = _read_json(meta_path, hint="written by training") if meta_path.is_file() else {}
        for name, entry in metrics["trial_lists"].items():
            if entry["set"] not in eval_sets:
                continue
            for backend, result in entry["results"].items():
                rows.append({
                    "system": system,
                    "set": entry["set"],
                    "trial_list": name,
                    "backend": backend,
                    **{key: result.get(key) for key in ("eer", "min_dcf_0.01", "min_dcf_0.001",
                                                          "cllr", "min_cllr", "num_trials")},
                    "ssl_params": (meta.get("params") or {}).get("ssl"),
                    "total_params": (meta.get("params") or {}).get("total"),
                    "ssl_time_ratio": meta.get("ssl_time_ratio"),
                })
    # Stable sort: systems and back ends keep their order within each trial list.
    rows.sort(key=lambda r: (list(eval_sets).index(r["set"]), r["trial_list"]))
    with atomic_write(exp_dir / "results.json") as f:
        json.dump({"systems": list(systems), "eval_sets": list(eval_sets), "rows": rows}, f,
                  indent=2)
        f.write("\n")
    markdown = render_markdown(rows)
    with atomic_write(exp_dir / "results.md") as f:
        f.write(markdown)
    return markdown


def render_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """One table per trial list; a system's parameter counts and speed on its first row only."""
    lines = [
        "# Results",
        "",
        "EER in %; minDCF at the given target prior with C_miss = C_fa = 1; Cllr of the scores "
        "calibrated on the validation trials; SSL time: the SSL model's inference time relative "
        "to the teacher's. **Bold**: the best EER of each trial list.",
    ]
    lists = list(dict.fromkeys((r["set"], r["trial_list"]) for r in rows))
    for set_name, name in lists:
        group = [r for r in rows if (r["set"], r["trial_list"]) == (set_name, name)]
        best = min(r["eer"] for r in group)
        lines += ["", f"## {set_name}: {name} ({group[0]['num_trials']:,} trials)", "",
                  "| " + " | ".join(COLUMNS) + " |",
                  "|" + "---|" * 2 + "---:|" * (len(COLUMNS) - 2)]
        previous = None
        for r in group:
            eer = f"{100 * r['eer']:.2f}"
            first = r["system"] != previous
            previous = r["system"]
            cells = [
                r["system"] if first else "",
                r["backend"],
                f"**{eer}**" if r["eer"] == best else eer,
                _number(r["min_dcf_0.01"]),
                _number(r["min_dcf_0.001"]),
                _number(r["cllr"]),
                _number(r["min_cllr"]),
                _count(r["ssl_params"]) if first else "",
                _count(r["total_params"]) if first else "",
                _number(r["ssl_time_ratio"], 2) if first else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _read_json(path: Path, hint: str) -> Dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "not found", hint=hint)
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise InputError(path, f"not valid JSON: {e}", hint=hint)


def _number(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value: Optional[int]) -> str:
    """Parameter counts in millions (``63.5M``) or thousands (``812K``).

    >>> _count(63_512_345), _count(812_000), _count(None)
    ('63.5M', '812K', '-')
    """
    if value is None:
        return "-"
    return f"{value / 1e6:.1f}M" if value >= 1e6 else f"{value / 1e3:.0f}K"
