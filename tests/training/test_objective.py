"""The training objective's loss phases and the optimizer step (clipping, parameter groups),
and the front-end distillation phase."""

import math

import pytest
import torch
from torch import nn

from oskdft.config import SystemConfig
from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import build_kd_loss
from oskdft.models.system import build_model
from oskdft.models.teacher import SSLTeacher, build_ssl_from_arch
from oskdft.training.objective import FrontEndDistillation, TrainingObjective, optimizer_step
from oskdft.training.schedules import LossWeights, loss_weights
from tests.models.tiny import tiny_arch, tiny_system_config


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(tiny_arch()))
    cfg: SystemConfig = tiny_system_config(kd={"loss": "distilhubert", "target_layers": [1, 3]})
    model = build_model(cfg, teacher.hf_model)
    kd_loss = build_kd_loss(cfg, model.ssl.hidden_size, teacher.hidden_size, teacher.num_layers)
    objective = TrainingObjective(model, kd_loss, AAMSoftmax(model.embed_dim, 3))
    wav = torch.randn(2, 16000)
    return objective, wav, teacher(wav)


def gradients_of(objective, weights, wav, states):
    objective.zero_grad(set_to_none=True)
    total, parts = objective(wav, torch.tensor([0, 2]), states, weights)
    total.backward()
    groups = objective.param_groups()
    has_grad = {name: any(p.grad is not None for p in params) for name, params in groups.items()}
    return total, parts, has_grad


def test_both_losses_weighted_and_all_groups_trained(setup):
    objective, wav, states = setup
    total, parts, has_grad = gradients_of(objective, LossWeights(kd=0.5, sv=1.0), wav, states)
    assert set(parts) == {"kd", "sv"}
    assert total.item() == pytest.approx(0.5 * parts["kd"].item() + parts["sv"].item(), rel=1e-5)
    assert has_grad == {"backend": True, "adapters": True, "ssl": True}
    heads = list(objective.kd_loss.parameters())
    assert heads and all(any(h is p for p in objective.param_groups()["ssl"]) for h in heads)


def test_kd_only_skips_the_back_end_and_sv_only_the_kd_heads(setup):
    objective, wav, states = setup
    _, parts, has_grad = gradients_of(objective, LossWeights(kd=1.0, sv=0.0), wav, states)
    assert set(parts) == {"kd"}
    assert not has_grad["backend"] and has_grad["ssl"]
    # The adapters run on the stacked batch's FT rows, which no loss reads.
    adapters = objective.param_groups()["adapters"]
    assert all(p.grad is None or not p.grad.any() for p in adapters)
    _, parts, _ = gradients_of(objective, LossWeights(kd=0.0, sv=1.0), wav, None)
    assert set(parts) == {"sv"}
    assert all(p.grad is None for p in objective.kd_loss.parameters())


def test_a_system_without_kd_never_runs_the_kd_branch(setup, monkeypatch):
    _, wav, _ = setup
    cfg = tiny_system_config(kd={"loss": "none"})
    model = build_model(cfg, SSLTeacher(build_ssl_from_arch(tiny_arch())).hf_model)
    objective = TrainingObjective(model, None, AAMSoftmax(model.embed_dim, 3))
    kd_asked = []
    forward = model.ssl.forward

    def spy(*args, **kwargs):
        kd_asked.append(kwargs["kd_branch"])
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.ssl, "forward", spy)
    _, parts = objective(wav, torch.tensor([0, 2]), None, loss_weights(cfg, epoch=0))
    assert set(parts) == {"sv"} and kd_asked == [False]


def test_kd_weight_without_teacher_states_is_an_error(setup):
    objective, wav, _ = setup
    with pytest.raises(ValueError, match="teacher"):
        objective(wav, torch.tensor([0, 1]), None, LossWeights(kd=1.0, sv=1.0))


class Quadratic(nn.Module):
    """Stands in for the objective: loss = 1e6 * |w|^2."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, wav, speakers, teacher_states, weights):
        loss = 1e6 * (self.w**2).sum()
        return loss, {"sv": loss.detach()}


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_optimizer_step_clips_the_gradient_norm(clip):
    module = Quadratic()
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    before = module.w.detach().clone()
    out = optimizer_step(
        module,
        optimizer,
        scaler,
        torch.zeros(1, 1),
        torch.zeros(1),
        None,
        LossWeights(kd=0.0, sv=1.0),
        grad_clip=clip,
    )
    moved = (module.w.detach() - before).norm().item()
    assert out["loss"].item() == 4e6
    assert moved == pytest.approx(clip if clip else 4e6, rel=1e-4)  # gradient 2e6 per entry
    assert module.w.grad is None  # zeroed for the next step


def front_end_setup(steps=8):
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(tiny_arch()))
    cfg = tiny_system_config(
        ssl={"thin_cnn_dim": 8, "pos_conv_groups": 4},
        kd={"front_end": "mse", "front_end_steps": steps, "front_end_lr": 1e-2},
    )
    model = build_model(cfg, teacher.hf_model)
    wav = torch.randn(2, 16000)
    with torch.no_grad():
        targets = {0: teacher.eval()(wav)[0]}
    return cfg, model, wav, targets


def test_front_end_distillation_trains_the_front_end_alone_towards_state_0():
    cfg, model, wav, targets = front_end_setup()
    phase = FrontEndDistillation(model.ssl, cfg.kd)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    losses = [phase.step(step, wav, targets).item() for step in range(cfg.kd.front_end_steps)]
    assert losses[-1] < 0.8 * losses[0]
    ids = {id(p) for p in model.ssl.front_end_parameters()}
    names = {name for name, p in model.named_parameters() if id(p) in ids}
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= names  # nothing outside the front end moves
    assert any(k.startswith("ssl.model.encoder.pos_conv") for k in changed)


def test_front_end_distillation_rate_is_a_cosine_to_0_and_gradients_are_averaged():
    cfg, model, wav, targets = front_end_setup(steps=4)
    phase = FrontEndDistillation(model.ssl, cfg.kd, average=lambda grad: 0 * grad)
    rates = [phase.learning_rate(step) for step in range(5)]
    assert rates == pytest.approx([1e-2 * (1 + math.cos(math.pi * s / 4)) / 2 for s in range(5)])
    assert rates[0] == 1e-2 and rates[2] == pytest.approx(5e-3) and rates[4] == 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    phase.step(0, wav, targets)  # all-zero averaged gradients: Adam does not move
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
