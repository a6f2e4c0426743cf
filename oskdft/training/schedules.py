"""Learning rates and loss weights per epoch: the paper's three schedules, all set in YAML.

Every value is a pure function of the (0-based) epoch index, constant within the epoch, as in
the original code, which stepped its schedulers once per epoch. A resumed run therefore needs
no scheduler state: the epoch in the checkpoint fixes every rate. In the formulas below
``e = epoch + 1`` counts epochs from 1 and ``E = optim.epochs``:

- ``backend`` (ECAPA-TDNN, its input layer weights, the AAM head): cosine from ``backend_lr``
  in epoch 1 down to ``backend_lr_min``, ``min + (max - min) * (1 + cos(pi * (e - 1) / P)) / 2``
  with ``P = E - 1`` (``backend_schedule: cosine``: the minimum in the last epoch) or ``P = E``
  (``restarts``: the original's CosineAnnealingWarmRestarts, T_0 = E, stepped once per epoch);
- ``adapters``: ``adapter_lr_mult`` times the back-end rate;
- ``ssl`` (the shared encoder weights, and the KD loss's own parameters): a linear warm-up over
  ``W = ssl_warmup_epochs`` epochs, then ``x ssl_decay`` per epoch. ``ssl_schedule: constant``:
  ``ssl_lr * e / W`` up to ``e = W``, then ``ssl_lr * ssl_decay ** (e - W)`` (no warm-up when W
  is 0: ``ssl_lr * ssl_decay ** (e - 1)``). ``backend``, the original's: ``backend(e) * e /
  (W + 1)`` up to ``e = W``, then ``backend(W) * W / (W + 1) * ssl_decay ** (e - W)``, so with
  W = 9 the original's ``sv_lr * e / 10`` for ``e < 10``, then ``x 0.93`` (no warm-up:
  ``backend(1) * ssl_decay ** (e - 1)``).

The loss weights: the KD loss is multiplied by :func:`oskdft.losses.kd.kd_weight` (the paper's
``(E - e) / E``, 0 after ``kd.until_epoch``), the AAM loss by 1 from epoch index
``sv.from_epoch`` on and 0 before (the two-step baselines distil first).

>>> from oskdft.config import OptimConfig
>>> rates = learning_rates(OptimConfig(), epoch=9)  # the 10th epoch: one decay step
>>> round(rates["ssl"] / 5e-5, 2), rates["adapters"] / rates["backend"]
(0.93, 10.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from oskdft.config import FBANK, OptimConfig, SystemConfig
from oskdft.losses.kd import kd_weight


def backend_lr(cfg: OptimConfig, epoch: int) -> float:
    """The back end's rate in ``epoch`` (0-based): cosine from ``backend_lr`` down to
    ``backend_lr_min``, over ``epochs - 1`` or (``restarts``) ``epochs`` epochs."""
    period = cfg.epochs if cfg.backend_schedule == "restarts" else cfg.epochs - 1
    progress = min(epoch / period, 1.0) if period > 0 else 0.0
    return (
        cfg.backend_lr_min
        + (cfg.backend_lr - cfg.backend_lr_min) * (1.0 + math.cos(math.pi * progress)) / 2.0
    )


def ssl_lr(cfg: OptimConfig, epoch: int) -> float:
    """The shared encoder's rate in ``epoch`` (0-based): warm-up, then geometric decay."""
    e, warmup = epoch + 1, cfg.ssl_warmup_epochs
    if cfg.ssl_schedule == "backend":
        # The original kept its last warm-up rate and decayed that, epoch by epoch.
        last = min(e, max(warmup, 1))
        peak = backend_lr(cfg, last - 1) * (last / (warmup + 1) if warmup else 1.0)
        return peak * cfg.ssl_decay ** (e - last)
    if e <= warmup:
        return cfg.ssl_lr * e / warmup
    return cfg.ssl_lr * cfg.ssl_decay ** (e - max(warmup, 1))


def learning_rates(cfg: OptimConfig, epoch: int) -> Dict[str, float]:
    """The rate of every parameter group in ``epoch`` (0-based)."""
    backend = backend_lr(cfg, epoch)
    return {
        "backend": backend,
        "adapters": backend * cfg.adapter_lr_mult,
        "ssl": ssl_lr(cfg, epoch),
    }


def trained_groups(cfg: SystemConfig) -> List[str]:
    """The groups of :func:`learning_rates` that system ``cfg`` has parameters in: no SSL
    encoder on filter banks, no adapters without them.

    >>> trained_groups(SystemConfig())
    ['backend', 'adapters', 'ssl']
    """
    has_ssl = cfg.ssl.source != FBANK
    return (
        ["backend"]
        + (["adapters"] if has_ssl and cfg.ssl.adapters else [])
        + (["ssl"] if has_ssl else [])
    )


SCHEDULE_EPOCHS = (1, 9, 10, 50, 100)


def format_schedule(
    cfg: OptimConfig,
    epochs: Sequence[int] = SCHEDULE_EPOCHS,
    groups: Optional[Sequence[str]] = None,
) -> str:
    """The learning rate of every group (or of ``groups``) in ``epochs`` (1-based; those past
    ``cfg.epochs`` are left out, the last epoch added), for checking a config before training it.

    >>> print(format_schedule(OptimConfig(epochs=10), epochs=(1, 10)))
    learning rate     epoch 1  epoch 10
    backend          1.00e-04  1.00e-06
    adapters         1.00e-03  1.00e-05
    ssl              5.56e-06  4.65e-05
    """
    shown = sorted({e for e in epochs if e <= cfg.epochs} | {cfg.epochs})
    rates = [learning_rates(cfg, e - 1) for e in shown]
    lines = [f"{'learning rate':<15}" + "".join(f"{f'epoch {e}':>10}" for e in shown)]
    for group in rates[0] if groups is None else groups:
        lines.append(f"{group:<15}" + "".join(f"{r[group]:>10.2e}" for r in rates))
    return "\n".join(lines)


@dataclass(frozen=True)
class LossWeights:
    """What the total loss of an epoch is made of: ``kd * KD loss + sv * AAM loss``."""

    kd: float
    sv: float

    @property
    def uses_kd(self) -> bool:
        return self.kd > 0.0

    @property
    def uses_sv(self) -> bool:
        return self.sv > 0.0


def loss_weights(cfg: SystemConfig, epoch: int) -> LossWeights:
    """The loss weights of ``epoch`` (0-based).

    >>> cfg = SystemConfig()
    >>> cfg.kd.until_epoch, cfg.sv.from_epoch = 2, 2  # two-step: distil 2 epochs, then fine-tune
    >>> [loss_weights(cfg, e).sv for e in range(4)], loss_weights(cfg, 2).kd
    ([0.0, 0.0, 1.0, 1.0], 0.0)
    """
    return LossWeights(kd=kd_weight(cfg, epoch), sv=1.0 if epoch >= cfg.sv.from_epoch else 0.0)
