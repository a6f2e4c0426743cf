import math

import pytest
import torch
import torch.nn.functional as F

from oskdft.losses.kd import KD_LOSSES, FrontEndLoss, build_kd_loss, kd_layers, kd_weight
from tests.models.tiny import tiny_system_config


def states(batch=2, frames=5, dim=4, layers=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, frames, dim, generator=generator) for _ in range(layers + 1))


def test_registry_names_the_losses():
    assert KD_LOSSES.names() == ["distilhubert", "mse_last"]


def test_mse_last_is_zero_for_equal_states_and_scaled_mse_otherwise():
    loss = build_kd_loss(tiny_system_config(), 4, 4, teacher_num_layers=12)
    teacher = states()
    assert loss((teacher[0], teacher[12]), teacher) == 0  # a student matching the last state
    student = states(seed=1)
    expected = 100 * ((student[-1] - teacher[-1]) ** 2).mean()
    assert torch.allclose(loss(student, teacher), expected)
    assert torch.allclose(loss(student, {12: teacher[12]}), expected)  # the cache's dict form
    assert loss(student, teacher) > 0


def test_distilhubert_is_minimal_for_equal_predictions_and_trains_its_heads():
    cfg = tiny_system_config(kd={"loss": "distilhubert", "scale": 1.0})
    loss = build_kd_loss(cfg, 4, 4, teacher_num_layers=12)
    assert sorted(loss.heads) == ["12", "4", "8"]
    with torch.no_grad():  # identity heads: the predictions are the student's last state
        for head in loss.heads.values():
            head.weight.copy_(torch.eye(4))
            head.bias.zero_()
    teacher = states()
    student = (teacher[0], teacher[4])
    cached = {layer: teacher[4] for layer in (4, 8, 12)}
    # Equal predictions: no L1 term, cosine 1, so 3 heads x -log sigmoid(1).
    minimum = 3 * -F.logsigmoid(torch.tensor(1.0))
    assert torch.allclose(loss(student, cached), minimum)
    assert loss(student, teacher) > minimum
    value = loss(states(seed=1)[:2], teacher)
    value.backward()
    assert all(head.weight.grad.any() for head in loss.heads.values())


def test_kd_layers_are_what_the_loss_reads():
    assert kd_layers(tiny_system_config(), 24) == [24]
    assert kd_layers(tiny_system_config(kd={"loss": "distilhubert"}), 12) == [4, 8, 12]
    assert kd_layers(tiny_system_config(kd={"loss": "none"}), 12) == []
    assert build_kd_loss(tiny_system_config(kd={"loss": "none"}), 4, 4, 12) is None
    with pytest.raises(ValueError, match="1..8"):
        kd_layers(tiny_system_config(kd={"loss": "distilhubert"}), 8)
    with pytest.raises(KeyError, match="available: distilhubert, mse_last"):
        kd_layers(tiny_system_config(kd={"loss": "mse"}), 8)


def test_mismatches_are_explained():
    with pytest.raises(ValueError, match="distilhubert"):
        build_kd_loss(tiny_system_config(), 4, 8, 12)
    loss = build_kd_loss(tiny_system_config(), 4, 4, 12)
    with pytest.raises(ValueError, match="frames"):
        loss(states(frames=5), states(frames=6))


def test_kd_weight_fades_linearly_and_stops():
    cfg = tiny_system_config()
    weights = [kd_weight(cfg, epoch) for epoch in range(101)]
    assert math.isclose(weights[0], 0.99) and weights[99] == 0 and weights[100] == 0
    assert all(math.isclose(a - b, 0.01) for a, b in zip(weights[:99], weights[1:100], strict=True))
    assert kd_weight(tiny_system_config(kd={"schedule": "constant"}), 50) == 1
    two_step = tiny_system_config(kd={"schedule": "constant", "until_epoch": 10})
    assert kd_weight(two_step, 9) == 1 and kd_weight(two_step, 10) == 0
    assert kd_weight(tiny_system_config(kd={"loss": "none"}), 0) == 0


@pytest.mark.parametrize("distance", ["mse", "l1_cosine"])
def test_front_end_term_adds_the_distance_of_hidden_state_0(distance):
    cfg = tiny_system_config(kd={"front_end": distance, "front_end_scale": 3.0})
    loss = build_kd_loss(cfg, 4, 4, teacher_num_layers=12)
    assert kd_layers(cfg, 12) == [0, 12] and loss.layers == [0, 12]
    teacher, student = states(), states(seed=1)
    s, t = student[0], teacher[0]
    if distance == "mse":
        expected = (
            sum((a - b) ** 2 for a, b in zip(s.flatten(), t.flatten(), strict=True)) / s.numel()
        )
    else:  # per frame: mean |s - t| - log sigmoid(cos(s, t)), averaged over frames
        frames = []
        for a, b in zip(s.reshape(-1, 4), t.reshape(-1, 4), strict=True):
            cosine = float(a @ b) / math.sqrt(float(a @ a) * float(b @ b))
            frames.append(float((a - b).abs().mean()) + math.log(1 + math.exp(-cosine)))
        expected = sum(frames) / len(frames)
    last = 100 * ((student[-1] - teacher[-1]) ** 2).mean()
    assert torch.allclose(loss(student, teacher), last + 3.0 * expected, rtol=1e-5)
    cached = {0: teacher[0], 12: teacher[12]}  # the cache's dict form
    assert torch.allclose(loss(student, cached), loss(student, teacher))
    matched = (teacher[0],) + student[1:]  # a matching front end adds only the minimum
    minimum = 0.0 if distance == "mse" else 3.0 * math.log(1 + math.exp(-1))
    assert torch.allclose(loss(matched, teacher), last + minimum, rtol=1e-5)


def test_front_end_term_is_refused_where_it_cannot_work():
    with pytest.raises(ValueError, match="kd.front_end=mse is a term of the KD loss"):
        kd_layers(tiny_system_config(kd={"loss": "none", "front_end": "mse"}), 12)
    with pytest.raises(ValueError, match="kd.front_end=mse is a term of the KD loss"):
        build_kd_loss(tiny_system_config(kd={"loss": "none", "front_end": "mse"}), 4, 4, 12)
    distil = tiny_system_config(kd={"loss": "distilhubert", "front_end": "mse"})
    assert kd_layers(distil, 12) == [0, 4, 8, 12]
    with pytest.raises(ValueError, match="kd.front_end=mse needs equal widths"):
        build_kd_loss(distil, 4, 8, 12)


def test_front_end_steps_need_a_front_end_distance():
    cfg = tiny_system_config(kd={"front_end_steps": 10})
    with pytest.raises(ValueError, match="kd.front_end_steps=10 distils with the kd.front_end"):
        build_kd_loss(cfg, 4, 4, 12)
    with pytest.raises(ValueError, match="kd.front_end_steps=10"):
        kd_layers(cfg, 12)
    cfg.kd.front_end = "mse"
    assert kd_layers(cfg, 12) == [0, 12]  # stage 2 caches hidden state 0 for the phase


def test_front_end_loss_is_the_unscaled_distance_of_hidden_state_0():
    cfg = tiny_system_config(kd={"front_end": "mse", "front_end_scale": 3.0})
    teacher, student = states(), states(seed=1)
    expected = ((student[0] - teacher[0]) ** 2).mean()
    assert torch.allclose(FrontEndLoss(cfg.kd)(student[0], {0: teacher[0]}), expected)
    with pytest.raises(ValueError, match="differ in batch or frames"):
        FrontEndLoss(cfg.kd)(student[0][:, :3], teacher)
