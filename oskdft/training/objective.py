"""The training objective: the speaker model, its KD loss and its AAM head as one module.

One module, so that DDP sees every trained parameter and reduces all their gradients in one
pass; its forward returns the weighted total loss (and the detached parts for logging), never
the embeddings, so DDP's search for unused parameters starts from the loss alone.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from oskdft.config import KDConfig
from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import FrontEndLoss, TeacherStates
from oskdft.models.student import BranchedSSL
from oskdft.models.system import SpeakerModel
from oskdft.training.schedules import LossWeights


class TrainingObjective(nn.Module):
    """``kd * KD(student KD branch, teacher) + sv * AAM(FT-branch embeddings, speakers)``.

    A loss whose weight is 0 is not computed: without SV only the encoder's KD branch runs
    (the back end is skipped), without KD only the FT branch.
    """

    def __init__(self, model: SpeakerModel, kd_loss: Optional[nn.Module], aam: AAMSoftmax):
        super().__init__()
        self.model, self.kd_loss, self.aam = model, kd_loss, aam

    def forward(
        self,
        wav: Tensor,
        speakers: Tensor,
        teacher_states: Optional[TeacherStates],
        weights: LossWeights,
    ) -> Tuple[Tensor, Dict[str, Tensor]]:
        if weights.uses_kd and (self.kd_loss is None or teacher_states is None):
            raise ValueError("a KD weight above 0 needs a KD loss and the teacher's states")
        parts: Dict[str, Tensor] = {}
        if weights.uses_sv:
            out = self.model.forward_train(wav, kd=weights.uses_kd)
            parts["sv"] = self.aam(out.embeddings, speakers)
            kd_states = out.kd_hidden_states
        else:
            kd_states = self.model.ssl(wav, kd_branch=True).kd_hidden_states
        if weights.uses_kd:
            assert self.kd_loss is not None and teacher_states is not None  # checked above
            parts["kd"] = self.kd_loss(kd_states, teacher_states)
        total = sum(getattr(weights, name) * loss for name, loss in parts.items())
        return total, {name: loss.detach() for name, loss in parts.items()}

    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """The model's three learning-rate groups, with the AAM head in ``backend`` and the KD
        loss's own parameters (DistilHuBERT's prediction heads) in ``ssl``."""
        groups = self.model.param_groups()
        groups["backend"] = groups["backend"] + list(self.aam.parameters())
        if self.kd_loss is not None:
            groups["ssl"] = groups["ssl"] + list(self.kd_loss.parameters())
        return groups


class FrontEndDistillation:
    """The phase before OS-KDFT (``kd.front_end_steps``): Adam on the encoder's front end alone
    (:meth:`~oskdft.models.student.BranchedSSL.front_end_parameters`), on the ``kd.front_end``
    distance between its hidden state 0 and the teacher's; no transformer layer runs, and the
    rest of the model is untouched. The rate follows a cosine from ``kd.front_end_lr`` to 0.

    :param average: applied to every gradient before the step (the mean over DDP ranks).
    """

    def __init__(
        self,
        ssl: BranchedSSL,
        cfg: KDConfig,
        average: Callable[[Tensor], Tensor] = lambda grad: grad,
    ):
        self.ssl, self.loss, self.average = ssl, FrontEndLoss(cfg), average
        self.params = ssl.front_end_parameters()
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.front_end_lr)
        self.lr, self.steps = cfg.front_end_lr, cfg.front_end_steps

    def learning_rate(self, step: int) -> float:
        return 0.5 * self.lr * (1 + math.cos(math.pi * step / self.steps))

    def step(self, step: int, wav: Tensor, teacher_states: TeacherStates) -> Tensor:
        """Step ``step`` (0-based) on a batch; the detached loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(step)
        loss = self.loss(self.ssl.front_end_state(wav), teacher_states)
        loss.backward()
        for param in self.params:
            if param.grad is not None:
                param.grad = self.average(param.grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def autocast(device: torch.device, amp_dtype: Optional[torch.dtype]) -> ContextManager:
    """Mixed precision in ``amp_dtype`` on ``device``; None: full precision."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def optimizer_step(
    trained: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    wav: Tensor,
    speakers: Tensor,
    teacher_states: Optional[TeacherStates],
    weights: LossWeights,
    amp_dtype: Optional[torch.dtype] = None,
    grad_clip: Optional[float] = None,
) -> Dict[str, Tensor]:
    """One training step of ``trained`` (a :class:`TrainingObjective`, DDP-wrapped or not):
    the forward pass under autocast, the backward pass through the grad scaler (a no-op unless
    fp16), gradient-norm clipping, the optimizer step.

    :return: the detached total ``loss`` and its parts.
    """
    with autocast(wav.device, amp_dtype):
        total, parts = trained(wav, speakers, teacher_states, weights)
    scaler.scale(total).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total.detach(), **parts}
