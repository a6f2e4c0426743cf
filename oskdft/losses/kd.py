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

``kd.front_end`` adds a front-end term to either: ``front_end_scale * D(student state 0, teacher
state 0)`` (the transformer input: CNN, feature projection, positional convolution), ``D`` the
``mse`` or DistilHuBERT's per-frame ``l1_cosine`` above, so a thin CNN and a cheaper positional
convolution (``ssl.thin_cnn_dim``, ``ssl.pos_conv_*``) learn the teacher's features. Layer 0 then
joins :func:`kd_layers` (and the cache and its key). ``kd.front_end_steps`` adds a phase before
epoch 1 in which :class:`FrontEndLoss` alone trains the front end
(:class:`oskdft.training.objective.FrontEndDistillation`).

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


class KDLoss(nn.Module):
    """What every KD loss has: the teacher hidden-state indices it reads, in order."""

    layers: List[int]


@KD_LOSSES.register("mse_last")
class MSELastLoss(KDLoss):
    """The paper's loss: mean squared error of the last hidden states, times ``scale``."""

    def __init__(self, cfg: KDConfig, student_dim: int, teacher_dim: int, teacher_num_layers: int):
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

    def forward(
        self, student_hidden_states: Sequence[Tensor], teacher_hidden_states: TeacherStates
    ) -> Tensor:
        student, teacher = student_hidden_states[-1], teacher_hidden_states[self.layers[0]]
        _check_frames(student, teacher)
        return self.scale * F.mse_loss(student, teacher)


@KD_LOSSES.register("distilhubert")
class DistilHuBERTLoss(KDLoss):
    """DistilHuBERT's layer-prediction loss (see the module docstring); ``heads[str(layer)]``
    predicts teacher hidden state ``layer``."""

    def __init__(self, cfg: KDConfig, student_dim: int, teacher_dim: int, teacher_num_layers: int):
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

    def forward(
        self, student_hidden_states: Sequence[Tensor], teacher_hidden_states: TeacherStates
    ) -> Tensor:
        student = student_hidden_states[-1]
        total = student.new_zeros(())
        for layer in self.layers:
            target = teacher_hidden_states[layer]
            _check_frames(student, target)
            total = total + _l1_cosine(self.heads[str(layer)](student), target)
        return self.scale * total


def _l1_cosine(prediction: Tensor, target: Tensor) -> Tensor:
    """DistilHuBERT's ``mean_t [ L1(prediction_t, target_t) / D - log sigmoid(cos) ]``."""
    l1 = (prediction - target).abs().mean(dim=-1)
    cosine = F.cosine_similarity(prediction, target, dim=-1)
    return (l1 - F.logsigmoid(cosine)).mean()


# kd.front_end -> the distance between the student's and the teacher's hidden state 0.
FRONT_END_DISTANCES: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry(
    "kd.front_end", names=CHOICES[KDConfig]["front_end"]
)
FRONT_END_DISTANCES.register("mse")(F.mse_loss)
FRONT_END_DISTANCES.register("l1_cosine")(_l1_cosine)


class FrontEndLoss(nn.Module):
    """``D(student state 0, teacher state 0)``, ``D`` of ``kd.front_end``: the term
    :class:`WithFrontEnd` adds, and the whole loss of the ``kd.front_end_steps`` phase."""

    def __init__(self, cfg: KDConfig):
        super().__init__()
        self.distance = FRONT_END_DISTANCES.get(cfg.front_end)

    def forward(self, student_state: Tensor, teacher_hidden_states: TeacherStates) -> Tensor:
        teacher = teacher_hidden_states[0]
        _check_frames(student_state, teacher)
        return self.distance(student_state, teacher)


class WithFrontEnd(KDLoss):
    """``loss + front_end_scale * D(student state 0, teacher state 0)`` (``kd.front_end``)."""

    def __init__(self, loss: KDLoss, cfg: KDConfig, student_dim: int, teacher_dim: int):
        super().__init__()
        if student_dim != teacher_dim:
            raise ValueError(
                f"kd.front_end={cfg.front_end} needs equal widths, got student {student_dim} and "
                f"teacher {teacher_dim}; set kd.front_end: {NO_KD}"
            )
        self.loss = loss
        self.layers = [0] + loss.layers
        self.front_end = FrontEndLoss(cfg)
        self.scale = cfg.front_end_scale

    def forward(
        self, student_hidden_states: Sequence[Tensor], teacher_hidden_states: TeacherStates
    ) -> Tensor:
        front_end = self.front_end(student_hidden_states[0], teacher_hidden_states)
        return self.loss(student_hidden_states, teacher_hidden_states) + self.scale * front_end


def build_kd_loss(
    cfg: SystemConfig, student_dim: int, teacher_dim: int, teacher_num_layers: int
) -> Optional[KDLoss]:
    """The configured KD loss module (None for ``kd.loss: none``)."""
    _check_front_end(cfg.kd)
    if cfg.kd.loss == NO_KD:
        return None
    loss = KD_LOSSES.get(cfg.kd.loss)(cfg.kd, student_dim, teacher_dim, teacher_num_layers)
    if cfg.kd.front_end == NO_KD:
        return loss
    return WithFrontEnd(loss, cfg.kd, student_dim, teacher_dim)


def kd_layers(cfg: SystemConfig, teacher_num_layers: int) -> List[int]:
    """Teacher hidden-state indices the configured loss reads (what stage 2 caches)."""
    _check_front_end(cfg.kd)
    if cfg.kd.loss == NO_KD:
        return []
    layers = KD_LOSSES.get(cfg.kd.loss).target_layers(cfg.kd, teacher_num_layers)
    return layers if cfg.kd.front_end == NO_KD else [0] + layers


def _check_front_end(cfg: KDConfig) -> None:
    if cfg.front_end != NO_KD and cfg.loss == NO_KD:
        raise ValueError(
            f"kd.front_end={cfg.front_end} is a term of the KD loss, and "
            f"kd.loss={NO_KD}; set kd.front_end: {NO_KD} or choose a kd.loss"
        )
    if cfg.front_end_steps and cfg.front_end == NO_KD:
        raise ValueError(
            f"kd.front_end_steps={cfg.front_end_steps} distils with the kd.front_end distance, "
            f"and kd.front_end={NO_KD}; choose one (mse) or set kd.front_end_steps: 0"
        )


# ---------------------------------------------------------------------------------------------
# The weight of the KD loss per epoch (epochs counted from 0)

KD_SCHEDULES: Registry[Callable[[KDConfig, int], float]] = Registry(
    "kd.schedule", names=CHOICES[KDConfig]["schedule"]
)


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
