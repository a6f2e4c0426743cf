"""The ``--device`` flag of every stage as a torch device."""

from __future__ import annotations

from typing import Optional, Union

import torch


def resolve_device(
    device: Union[str, torch.device], local_rank: Optional[int] = None
) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU. With ``local_rank`` (a torchrun
    rank), ``auto`` and ``cuda`` name that rank's GPU.

    >>> resolve_device("cpu"), resolve_device("cuda", local_rank=1)
    (device(type='cpu'), device(type='cuda', index=1))
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return torch.device(device)
