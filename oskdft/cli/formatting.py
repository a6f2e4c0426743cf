"""The text the ``oskdft`` command prints: what ``oskdft info MODEL`` shows of a model."""

from __future__ import annotations

import textwrap
from typing import Any, Dict

from oskdft.inference.deploy import ONNX

# Dotted config keys that `oskdft info` shows as the training summary.
TRAINING_SUMMARY = (
    "ssl.source",
    "ssl.num_layers",
    "ssl.adapters",
    "ssl.thin_cnn_dim",
    "kd.loss",
    "kd.scale",
    "sv.margin",
    "optim.epochs",
    "optim.batch_size",
    "backend.channels",
    "backend.embed_dim",
)
PARAMETER_ORDER = ("ssl", "adapters", "backend", "aam_head", "total")


def format_model_info(info: Dict[str, Any]) -> str:
    """:func:`~oskdft.inference.deploy.describe_model`'s facts as the text ``oskdft info``
    prints."""
    kind = "ONNX export" if info["kind"] == ONNX else "PyTorch, trained-model directory"
    lines = [
        f"model        {info['model']} ({kind})",
        f"system       {info['system']}"
        + (f": {info['description']}" if info["description"] else ""),
        f"teacher      {info['teacher'] or '-'}",
    ]
    if info["params"]:
        # The trainer's counts, in the order of the components in the model.
        counts = sorted(
            info["params"].items(),
            key=lambda item: PARAMETER_ORDER.index(item[0]) if item[0] in PARAMETER_ORDER else -1,
        )
        lines.append("parameters   " + ", ".join(f"{name} {count:,}" for name, count in counts))
    if info["macs_per_second"]:
        lines.append(
            "compute      "
            + ", ".join(f"{name} {count:,}" for name, count in info["macs_per_second"].items())
            + " MACs per second of audio"
        )
    settings = " ".join(
        f"{dotted}={info['config'][dotted.split('.')[0]][dotted.split('.')[1]]}"
        for dotted in TRAINING_SUMMARY
    )
    lines.append(
        textwrap.fill(
            settings,
            width=100,
            initial_indent="training     ",
            subsequent_indent=" " * 13,
            break_on_hyphens=False,
        )
    )
    lines.append(f"config       {info['config_path']}")
    export = info["export"]
    if export:
        lines.append(
            f"exported     from {export['exported_from']}, {export['embed_dim']}-d "
            f"embeddings of {export['sample_rate']} Hz audio; files: "
            + ", ".join(export["files"].values())
        )
        figures = export["parity"]
        lines.append(
            "parity       "
            + ", ".join(
                f"{name} min cosine {figures[name]['min_cosine']:.6f}"
                for name in ("onnx", "torchscript", "int8")
                if name in figures
            )
            + f" (vs PyTorch, {len(figures['utterances'])} utterances of {figures['set']})"
        )
    calibration = info["calibration"]
    if calibration:
        name = calibration["default_backend"]
        entry = calibration["backends"][name]
        thresholds = ", ".join(
            f"{point} {value:.3f}" for point, value in entry["thresholds"].items()
        )
        lines.append(
            f"deployment   back end {name}: llr = {entry['scale']:.3f} x score "
            f"{entry['offset']:+.3f}; LLR thresholds {thresholds}"
        )
    else:
        lines.append(
            "deployment   no calibration: run stage 5"
            + (", then stage 6 again" if info["kind"] == ONNX else "")
        )
    if info["metrics"]:
        lines += ["", _results_table(info["metrics"])]
    return "\n".join(lines)


def _results_table(metrics: Dict[str, Any]) -> str:
    header = (
        f"{'trial list':<16} {'back end':<12} {'EER (%)':>8} {'minDCF0.01':>10} "
        f"{'Cllr':>7} {'min Cllr':>8}"
    )
    rows = [header]
    for name, entry in metrics["trial_lists"].items():
        for backend, result in entry["results"].items():
            marker = "*" if backend == metrics.get("deploy_backend") else ""
            rows.append(
                f"{name:<16} {backend + marker:<12} {100 * result['eer']:>8.2f} "
                f"{result['min_dcf_0.01']:>10.3f} {result.get('cllr', float('nan')):>7.3f} "
                f"{result['min_cllr']:>8.3f}"
            )
    rows.append("(* the deployment back end)")
    return "\n".join(rows)
