"""Training checkpoints: everything needed to continue exactly, written atomically.

``exp/<system>/checkpoints/`` holds

- ``epoch-<N>.pt`` after epoch N (1-based) ends, the last ``keep`` of them;
- ``latest.pt`` every ``train.checkpoint_every`` steps inside an epoch (deleted once the epoch
  ends, since the epoch checkpoint is newer);
- ``best.pt``: the weights alone (``SpeakerModel`` state dict) of the epoch with the best
  validation EER so far.

A checkpoint is a dict of tensors and plain Python values, loaded with
``torch.load(weights_only=True)``: the model, KD-loss and AAM-head weights, the optimizer and
grad-scaler states, the epoch and step, the sampler position, the validation history and the
training time. The learning rates are a function of the epoch (:mod:`~.schedules`) and every
step reseeds the random generators from ``(seed, rank, step)`` (:func:`step_seed`), so the
epoch and step stand for the scheduler and RNG states.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_path

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
BEST = "best.pt"
_EPOCH_NAME = re.compile(r"^epoch-(\d+)\.pt$")

Checkpoint = Dict[str, Any]


def epoch_checkpoint_name(epoch: int) -> str:
    """The file of the checkpoint written when (1-based) epoch ``epoch`` ends.

    >>> epoch_checkpoint_name(3)
    'epoch-3.pt'
    """
    return f"epoch-{epoch}.pt"


def save_checkpoint(path: Pathlike, state: Checkpoint) -> None:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous file intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Pathlike) -> Checkpoint:
    """Read a checkpoint (tensors and plain values only), on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
        raise InputError(
            path,
            f"cannot read the checkpoint ({str(e).splitlines()[0]})",
            hint="delete it to resume from an older one",
        ) from e


def epoch_checkpoints(checkpoint_dir: Pathlike) -> List[Path]:
    """The ``epoch-N.pt`` files, oldest first."""
    found = []
    for path in Path(checkpoint_dir).glob("epoch-*.pt"):
        match = _EPOCH_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def newest_checkpoint(checkpoint_dir: Pathlike) -> Optional[Path]:
    """The checkpoint to resume from: ``latest.pt`` (mid-epoch, newer than every epoch
    checkpoint because those delete it) or else the last epoch checkpoint; None if none."""
    latest = Path(checkpoint_dir) / LATEST
    if latest.is_file():
        return latest
    epochs = epoch_checkpoints(checkpoint_dir)
    return epochs[-1] if epochs else None


def prune_checkpoints(checkpoint_dir: Pathlike, keep: int) -> List[Path]:
    """Delete all but the newest ``keep`` epoch checkpoints; returns the deleted paths."""
    old = epoch_checkpoints(checkpoint_dir)[:-keep] if keep > 0 else []
    for path in old:
        path.unlink()
    return old


def average_model_states(states: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """The element-wise mean of model state dicts; integer tensors (BatchNorm's batch
    counters) are taken from the last state.

    >>> a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    >>> average_model_states([a, b])["w"].tolist()
    [2.0, 4.0]
    """
    if not states:
        raise ValueError("no states to average")
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            total = torch.stack([s[key].double() for s in states]).sum(dim=0)
            averaged[key] = total.div(len(states)).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of torch's generators for global step ``step`` on ``rank``: dropout masks are a
    function of these three, so a resumed run draws what an uninterrupted one draws.

    >>> step_seed(1, 0, 5) != step_seed(1, 1, 5) != step_seed(1, 0, 6)
    True
    """
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0] >> 1)
