"""Checkpoint files: weights-only round trip, which one is resumed, pruning, averaging."""

import pytest
import torch

from oskdft.training.checkpoint import (
    LATEST,
    average_model_states,
    epoch_checkpoint_name,
    epoch_checkpoints,
    load_checkpoint,
    newest_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_seed,
)
from oskdft.utils.errors import InputError


def test_round_trip_of_a_training_state(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam([{"params": model.parameters(), "name": "backend"}], lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = {
        "epoch": 2,
        "step": 7,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sampler": {"epoch": 2, "consumed": 8},
        "valid_eers": [0.5, None],
        "best_epoch": 0,
        "train_seconds": 1.5,
    }
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")  # weights_only=True inside
    assert loaded["valid_eers"] == [0.5, None] and loaded["sampler"]["consumed"] == 8
    assert torch.equal(loaded["model"]["weight"], model.weight)
    restored = torch.optim.Adam([{"params": model.parameters(), "name": "backend"}], lr=1.0)
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["lr"] == 0.1
    assert torch.equal(
        restored.state[model.weight]["exp_avg"], optimizer.state[model.weight]["exp_avg"]
    )


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        open(f, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_unreadable_checkpoint_is_an_input_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_newest_is_latest_then_highest_epoch_and_pruning_keeps_the_last(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    for epoch in (1, 2, 10):
        save_checkpoint(tmp_path / epoch_checkpoint_name(epoch), {"epoch": epoch})
    (tmp_path / "epoch-x.pt").write_text("not ours")
    assert newest_checkpoint(tmp_path).name == "epoch-10.pt"  # numeric, not text order
    save_checkpoint(tmp_path / LATEST, {"epoch": 10})
    assert newest_checkpoint(tmp_path).name == LATEST
    removed = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["epoch-1.pt"]
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["epoch-2.pt", "epoch-10.pt"]


def test_average_of_model_states():
    states = [
        {"w": torch.tensor([1.0, 4.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([2.0, 5.0]), "n": torch.tensor(5)},
        {"w": torch.tensor([6.0, 0.0]), "n": torch.tensor(9)},
    ]
    averaged = average_model_states(states)
    assert averaged["w"].tolist() == [3.0, 3.0]
    assert averaged["n"].item() == 9  # counters are not averaged


def test_step_seeds_differ_by_rank_and_step_and_repeat():
    seeds = {step_seed(1, rank, step) for rank in range(4) for step in range(1000)}
    assert len(seeds) == 4000
    assert step_seed(1, 2, 3) == step_seed(1, 2, 3)
