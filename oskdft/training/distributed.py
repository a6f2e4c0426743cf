"""Process groups for stage 3: torchrun's environment, or one plain process.

Under ``torchrun`` (one or many GPUs, one or many nodes) the ranks come from the environment
variables it sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); rank ``r`` uses GPU
``LOCAL_RANK`` and NCCL, or the CPU and gloo. Without them the trainer is a single process and
nothing is initialised. Rank 0 alone logs and writes files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist
from torch import nn

from oskdft.models.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join torchrun's process group when launched by it; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ctx = DistContext(rank, world_size, local_rank, resolve_device(device, local_rank))
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if ctx.is_distributed and not dist.is_initialized():
        backend = "nccl" if ctx.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world_size)
    return ctx


def shutdown(ctx: DistContext) -> None:
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def broadcast_from_main(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a decision taken once, e.g. which checkpoint to resume:
    on a network file system other nodes may still see files rank 0 has just moved)."""
    if not ctx.is_distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_mean(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the ranks (the tensor itself in a single process)."""
    if ctx.is_distributed:
        values = values.clone()
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 of every parameter, bit for bit. Buffers are left out: without SyncBatchNorm
    (CPU runs) each rank's BatchNorm statistics follow its own batches; rank 0's are saved."""
    digest = hashlib.sha256()
    for name, tensor in module.named_parameters():
        digest.update(name.encode())
        raw = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
        digest.update(raw)  # type: ignore[arg-type]  # numpy's stubs omit its buffer protocol
    return digest.hexdigest()


def check_replicas_agree(ctx: DistContext, module: nn.Module) -> List[str]:
    """Fingerprints of ``module`` on every rank (none in a single process); raises when any
    two differ (DDP must keep the replicas identical bit for bit, so a difference is a bug,
    not noise)."""
    if not ctx.is_distributed:
        return []
    fingerprint = weights_fingerprint(module)
    fingerprints: List[str] = [""] * ctx.world_size
    dist.all_gather_object(fingerprints, fingerprint)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(
            "the model replicas differ between ranks: "
            + ", ".join(f"rank {r}: {f[:12]}" for r, f in enumerate(fingerprints))
        )
    return fingerprints
