"""Parameter counts per component, for ``oskdft info`` and stage 5's results table.

Counting a configuration builds it on the meta device: shapes only, no memory, no weights, so
the 315M-parameter paper teacher costs milliseconds.

>>> from oskdft.config import SystemConfig
>>> cfg = SystemConfig()
>>> cfg.ssl.source = "scratch"
>>> cfg.ssl.arch = {"model_type": "wav2vec2", "hidden_size": 64, "num_hidden_layers": 2,
...                 "num_attention_heads": 2, "intermediate_size": 128}
>>> counts = describe_system(cfg)["system"]
>>> counts["total"] == counts["ssl"] + counts["adapters"] + counts["backend"]
True
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Optional

import torch
from torch import nn
from transformers import PretrainedConfig

from oskdft.config import SystemConfig
from oskdft.models.system import SpeakerModel, build_model
from oskdft.models.teacher import build_ssl_from_arch

COMPONENTS = ("ssl", "adapters", "backend", "aam_head", "total")


def count_parameters(model: SpeakerModel, aam_head: Optional[nn.Module] = None
                     ) -> Dict[str, int]:
    """Parameters of ``ssl`` (the encoder), ``adapters``, ``backend`` (ECAPA and its input
    layer), ``aam_head`` (only when given) and their ``total``."""
    counts = {name: _numel(params) for name, params in model.param_groups().items()}
    if aam_head is not None:
        counts["aam_head"] = _numel(aam_head.parameters())
    counts["total"] = sum(counts.values())
    return counts


def describe_system(
    cfg: SystemConfig,
    teacher_config: Optional[PretrainedConfig] = None,
    aam_head: Optional[nn.Module] = None,
) -> Dict[str, Dict[str, int]]:
    """Counts of system ``cfg`` and, when it has a teacher, of the reference ``teacher``
    system (the teacher's encoder, no adapters, the same back end), built on the meta device.

    :param teacher_config: the teacher's Hugging Face config (``load_teacher_config``); needed
        for ``ssl.source`` student and teacher.
    :param aam_head: counted as the system's ``aam_head`` (it depends on the speaker count).
    """
    with torch.device("meta"):
        teacher = None if teacher_config is None else build_ssl_from_arch(teacher_config)
        out = {"system": count_parameters(build_model(cfg, teacher), aam_head)}
        if teacher is not None:
            ssl = dataclasses.replace(cfg.ssl, source="teacher", adapters=False)
            reference = build_model(dataclasses.replace(cfg, ssl=ssl), teacher)
            out["teacher"] = count_parameters(reference)
    return out


def format_description(name: str, description: Dict[str, Dict[str, int]]) -> str:
    """A plain-text table of :func:`describe_system`'s counts, with the size reduction.

    >>> print(format_description("s", {"system": {"ssl": 5, "adapters": 0, "backend": 1,
    ...                                           "total": 6}}))
    component       system (s)
    ssl                      5
    adapters                 0
    backend                  1
    total                    6
    """
    columns = {f"system ({name})": description["system"]}
    if "teacher" in description:
        columns["teacher + same back end"] = description["teacher"]
    rows = [c for c in COMPONENTS if any(c in counts for counts in columns.values())]
    widths = [max(len(title), 14) for title in columns]
    lines = [f"{'component':<10}" + "".join(f"{t:>{w + 2}}" for t, w in zip(columns, widths))]
    for row in rows:
        cells = [f"{counts[row]:,}" if row in counts else "-" for counts in columns.values()]
        lines.append(f"{row:<10}" + "".join(f"{c:>{w + 2}}" for c, w in zip(cells, widths)))
    if "teacher" in description:
        system, teacher = description["system"], description["teacher"]
        size = sum(system[k] for k in ("ssl", "adapters", "backend"))
        reference = teacher["ssl"] + teacher["backend"]
        lines.append(
            f"ssl + adapters + backend: {size / reference:.1%} of the teacher's "
            f"({1 - size / reference:.1%} smaller); ssl alone: "
            f"{system['ssl'] / teacher['ssl']:.1%} of the teacher's"
        )
    return "\n".join(lines)


def _numel(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)
