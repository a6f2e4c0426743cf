"""Size and compute per component, for ``oskdft info``, ``final/meta.json`` and stage 5's table.

Parameters are counted per component; compute as multiply-accumulates (MACs) per second of
audio. Counting a configuration builds it on the meta device: shapes only, no memory, no
weights, so the 315M-parameter paper teacher costs seconds.

>>> from oskdft.config import SystemConfig
>>> cfg = SystemConfig()
>>> cfg.ssl.source = "scratch"
>>> cfg.ssl.arch = {"model_type": "wav2vec2", "hidden_size": 64, "num_hidden_layers": 2,
...                 "num_attention_heads": 2, "intermediate_size": 128}
>>> system = describe_system(cfg)["system"]
>>> counts = system["params"]
>>> counts["total"] == counts["ssl"] + counts["adapters"] + counts["backend"]
True
>>> 0 < system["macs_per_second"]["ssl"] < system["macs_per_second"]["total"]
True
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import PretrainedConfig

from oskdft.config import SystemConfig
from oskdft.layout import SAMPLE_RATE
from oskdft.models.system import SpeakerModel, build_model
from oskdft.models.teacher import build_ssl_from_arch

COMPONENTS = ("ssl", "adapters", "backend", "aam_head", "total")


def count_parameters(model: SpeakerModel, aam_head: Optional[nn.Module] = None) -> Dict[str, int]:
    """Parameters of ``ssl`` (the encoder), ``adapters``, ``backend`` (ECAPA and its input
    layer), ``aam_head`` (only when given) and their ``total``."""
    counts = {name: _numel(params) for name, params in model.param_groups().items()}
    if aam_head is not None:
        counts["aam_head"] = _numel(aam_head.parameters())
    counts["total"] = sum(counts.values())
    return counts


def macs_per_second(model: SpeakerModel) -> Dict[str, int]:
    """Multiply-accumulates of the inference path on one second of audio (batch 1): ``ssl``
    for the front end (the SSL encoder with its adapters on the FT branch, or the filter bank)
    and ``total`` with the back end. Counted by ``torch.utils.flop_counter`` (MACs = FLOPs / 2),
    which counts matrix products, convolutions and attention, not element-wise operations or
    normalisations. Only shapes matter, so the count is deterministic, and a model on the meta
    device is counted too.
    """
    # The back end's device: Hugging Face makes the SpecAugment embedding (kept with
    # ssl.spec_augment) on the CPU even under a meta device context.
    # One second of audio at the rate stage 0 converts to.
    wav = torch.zeros(1, SAMPLE_RATE, device=next(model.ecapa.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        return {"ssl": _macs(model.ssl, wav), "total": _macs(model, wav)}
    finally:
        model.train(was_training)


def describe_system(
    cfg: SystemConfig,
    teacher_config: Optional[PretrainedConfig] = None,
    aam_head: Optional[nn.Module] = None,
) -> Dict[str, Dict[str, Dict[str, int]]]:
    """``params`` (:func:`count_parameters`) and ``macs_per_second`` (:func:`macs_per_second`)
    of system ``cfg`` and, when it has a teacher, of the reference ``teacher`` system (the
    teacher's encoder, no adapters, the same back end), built on the meta device.

    :param teacher_config: the teacher's Hugging Face config (``load_teacher_config``); needed
        for ``ssl.source`` student and teacher.
    :param aam_head: counted as the system's ``aam_head`` (it depends on the speaker count).
    """
    with torch.device("meta"):
        teacher = None if teacher_config is None else build_ssl_from_arch(teacher_config)
        models = {"system": (build_model(cfg, teacher), aam_head)}
        if teacher is not None:
            ssl = dataclasses.replace(cfg.ssl, source="teacher", adapters=False)
            models["teacher"] = (build_model(dataclasses.replace(cfg, ssl=ssl), teacher), None)
        return {
            name: {
                "params": count_parameters(model, head),
                "macs_per_second": macs_per_second(model),
            }
            for name, (model, head) in models.items()
        }


def format_description(name: str, description: Dict[str, Dict[str, Any]]) -> str:
    """A plain-text table of :func:`describe_system`'s counts (``MACs/s``: multiply-accumulates
    per second of audio), with the size and compute reduction.

    >>> print(format_description("s", {"system": {
    ...     "params": {"ssl": 5, "adapters": 0, "backend": 1, "total": 6},
    ...     "macs_per_second": {"ssl": 2000, "total": 3000}}}))
    component          system (s)
    ssl                         5
    adapters                    0
    backend                     1
    total                       6
    MACs/s ssl              2,000
    MACs/s total            3,000
    """
    titles = {"system": f"system ({name})", "teacher": "teacher + same back end"}
    columns = {titles[key]: value for key, value in description.items()}
    widths = [max(len(title), 14) for title in columns]
    rows = [(row, "params", row) for row in COMPONENTS]
    rows += [(f"MACs/s {row}", "macs_per_second", row) for row in ("ssl", "total")]
    lines = [
        f"{'component':<13}"
        + "".join(f"{t:>{w + 2}}" for t, w in zip(columns, widths, strict=True))
    ]
    for label, section, row in rows:
        if not any(row in value[section] for value in columns.values()):
            continue
        cells = [
            f"{value[section][row]:,}" if row in value[section] else "-"
            for value in columns.values()
        ]
        lines.append(
            f"{label:<13}" + "".join(f"{c:>{w + 2}}" for c, w in zip(cells, widths, strict=True))
        )
    if "teacher" in description:
        system, teacher = description["system"], description["teacher"]
        params, reference = system["params"], teacher["params"]
        size = sum(params[k] for k in ("ssl", "adapters", "backend"))
        total = reference["ssl"] + reference["backend"]
        macs, reference_macs = system["macs_per_second"], teacher["macs_per_second"]
        lines.append(
            f"ssl + adapters + backend: {size / total:.1%} of the teacher's "
            f"({1 - size / total:.1%} smaller); ssl alone: "
            f"{params['ssl'] / reference['ssl']:.1%} of the teacher's; MACs: "
            f"{macs['total'] / reference_macs['total']:.1%} of the teacher's, ssl alone "
            f"{macs['ssl'] / reference_macs['ssl']:.1%}"
        )
    return "\n".join(lines)


def _macs(module: nn.Module, wav: torch.Tensor) -> int:
    # Attention through its plain matrix products: the counter has no formula for the fused
    # CPU kernel, so it would count attention on the meta device and on GPUs but not on CPUs.
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(wav)
    return counter.get_total_flops() // 2


def _numel(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
