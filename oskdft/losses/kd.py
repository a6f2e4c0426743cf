"""Knowledge-distillation losses between the student's KD branch and the frozen teacher.

Hidden states follow Hugging Face's ``hidden_states`` convention (index 0 = transformer input,
index L = ``last_hidden_state``). Teacher states come as the full tuple (online teacher) or as a
``{layer: tensor}`` dict holding only :func:`kd_layers` (the stage-2 cache); both are indexed by
layer. Student and teacher must have the same number of frames (same CNN strides).

- ``mse_last`` (the paper): ``scale * MSE(student last, teacher last)``.
- ``distilhubert`` (Chang et al. 2022): one linear prediction head per teacher layer in
  ``kd.target_layers``, reading the student's last hidden state; per head
  ``mean_t [ L1(pred_t, target_t) / D - log sigmoid(cos(pred_t, target_t)) ]``, summed over heads,
  times ``scale``. Its heads are parameters of the loss module: optimise them with the ``ssl``
  learning-rate group. The loss is never zero: its minimum, with predictions equal to targets,
  is ``-log sigmoid(1) = 0.313`` per head.

The trainer multiplies the loss by :func:`kd_weight` of the epoch.

>>> from oskdft.config import SystemConfig
>>> cfg = SystemConfig()
>>> kd_layers(cfg, teacher_num_layers=24), kd_weight(cfg, epoch=0), kd_weight(cfg, epoch=99)
([24], 0.99, 0.0)
"""
from __future__ import annotations

from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from torch import Tensor, nn

from oskdft.config import CHOICES, NO_KD, KDConfig, SystemConfig
from oskdft.utils.registry import Registry

TeacherStates = Union[Tuple[Tensor, ...], Mapping[int, Tensor]]

KD_LOSSES: Registry = Registry("kd.loss", names=CHOICES[KDConfig]["loss"])


@KD_LOSSES.register("mse_last")
class MSELastLoss(nn.Module):
    """The paper's loss: mean squared error of the last hidden states, times ``scale``."""

    def __init__(self, cfg: KDConfig, student_dim: int, teacher_dim: int,
                 teacher_num_layers: int):
        super().__init__()
        if student_dim != teacher_dim:
            raise ValueError(
                f"kd.loss=mse_last needs equal widths, got student {student_dim} and teacher "
                f"{teacher_dim}; use kd.loss=distilhubert (prediction heads) instead"
            )
        self.layers = self.target_layers(cfg, teacher_num_layers)
        self.scale = cfg.scale

    @staticmethod
    def target_layers(cfg: KDConfig, teacher_num_layers: int) -> List[int]:
        return [teacher_num_layers]

    def forward(self, student_hidden_states: Sequence[Tensor], teacher_hidden_states: TeacherStates
                ) -> Tensor:
        student, teacher = student_hidden_states[-1], teacher_hidden_states[self.layers[0]]
        _check_frames(student, teacher)
        return self.scale * F.mse_loss(student, teacher)


@KD_LOSSES.register("distilhubert")
class DistilHuBERTLoss(nn.Module):
    """DistilHuBERT's layer-prediction loss (see the module docstring); ``heads[str(layer)]``
    predicts teacher hidden state ``layer``."""

    def __init__(self, cfg: KDConfig, student_dim: int, teacher_dim: int,
                 teacher_num_layers: int):
        super().__init__()
        self.layers = self.target_layers(cfg, teacher_num_layers)
        self.scale = cfg.scale
        self.heads = nn.ModuleDict(
            {str(layer): nn.Linear(student_dim, teacher_dim) for layer in self.layers}
        )

    @staticmethod
    def target_layers(cfg: KDConfig, teacher_num_layers: int) -> List[int]:
        layers = list(cfg.target_layers)
        if not layers or not all(1 <= layer <= teacher_num_layers for layer in layers):
            raise ValueError(
                f"kd.target_layers must be teacher layers in 1..{teacher_num_layers}, got {layers}"
            )
        return layers

    def forward(self, student_hidden_states: Sequence[Tensor], teacher_hidden_states: TeacherStates
                ) -> Tensor:
        student = student_hidden_states[-1]
        total = student.new_zeros(())
        for layer in self.layers:
            target = teacher_hidden_states[layer]
            _check_frames(student, target)
            prediction = self.heads[str(layer)](student)
            l1 = (prediction - target).abs().mean(dim=-1)
            cosine = F.cosine_similarity(prediction, target, dim=-1)
            total = total + (l1 - F.logsigmoid(cosine)).mean()
        return self.scale * total


def build_kd_loss(cfg: SystemConfig, student_dim: int, teacher_dim: int,
                  teacher_num_layers: int) -> Optional[nn.Module]:
    """The configured KD loss module (None for ``kd.loss: none``)."""
    if cfg.kd.loss == NO_KD:
        return None
    return KD_LOSSES.get(cfg.kd.loss)(cfg.kd, student_dim, teacher_dim, teacher_num_layers)


def kd_layers(cfg: SystemConfig, teacher_num_layers: int) -> List[int]:
    """Teacher hidden-state indices the configured loss reads (what stage 2 caches)."""
    if cfg.kd.loss == NO_KD:
        return []
    return KD_LOSSES.get(cfg.kd.loss).target_layers(cfg.kd, teacher_num_layers)


# ---------------------------------------------------------------------------------------------
# The weight of the KD loss per epoch (epochs counted from 0)

KD_SCHEDULES: Registry[Callable[[KDConfig, int], float]] = Registry(
    "kd.schedule", names=CHOICES[KDConfig]["schedule"])


@KD_SCHEDULES.register("linear_decay")
def _linear_decay(cfg: KDConfig, epoch: int) -> float:
    """The original's ``(E - epoch) / E`` with epochs counted from 1: 0.99 in the first epoch,
    0 in epoch E and after."""
    return max(0.0, (cfg.decay_epochs - (epoch + 1)) / cfg.decay_epochs)


@KD_SCHEDULES.register("constant")
def _constant(cfg: KDConfig, epoch: int) -> float:
    return 1.0


def kd_weight(cfg: SystemConfig, epoch: int) -> float:
    """The factor the trainer multiplies the KD loss by in ``epoch`` (0 once KD has stopped)."""
    if cfg.kd.loss == NO_KD or (cfg.kd.until_epoch is not None and epoch >= cfg.kd.until_epoch):
        return 0.0
    return KD_SCHEDULES.get(cfg.kd.schedule)(cfg.kd, epoch)


def _check_frames(student: Tensor, teacher: Tensor) -> None:
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"student states {tuple(student.shape)} and teacher states {tuple(teacher.shape)} "
            "differ in batch or frames; both must see the same window"
        )
