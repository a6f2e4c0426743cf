"""The experiment directory: start, resume on an equal config, refuse another, --force."""
import pytest
import torch

from oskdft.config import SystemConfig, load_config, save_config, to_dict
from oskdft.training.checkpoint import LATEST, save_checkpoint
from oskdft.training.distributed import DistContext
from oskdft.training.experiment import config_differences, prepare_exp_dir
from oskdft.utils.errors import InputError

SINGLE = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_fresh_run_saves_the_config_and_starts(tmp_path):
    cfg = SystemConfig()
    assert prepare_exp_dir(tmp_path / "exp", cfg, force=False, ctx=SINGLE) is None
    assert to_dict(load_config(tmp_path / "exp" / "config.yaml")) == to_dict(cfg)


def test_equal_config_resumes_from_the_newest_checkpoint(tmp_path):
    cfg = SystemConfig()
    prepare_exp_dir(tmp_path, cfg, force=False, ctx=SINGLE)
    save_checkpoint(tmp_path / "checkpoints" / LATEST, {"step": 3})
    assert prepare_exp_dir(tmp_path, cfg, force=False, ctx=SINGLE).name == LATEST


def test_other_config_is_refused_with_the_differing_keys(tmp_path):
    old = SystemConfig()
    prepare_exp_dir(tmp_path, old, force=False, ctx=SINGLE)
    new = SystemConfig()
    new.optim.epochs, new.sv.margin = 3, 0.3
    with pytest.raises(InputError, match=r"optim\.epochs, sv\.margin.*--force true"):
        prepare_exp_dir(tmp_path, new, force=False, ctx=SINGLE)


def test_force_moves_the_old_run_aside_untouched(tmp_path):
    exp = tmp_path / "oskdft"
    old = SystemConfig()
    prepare_exp_dir(exp, old, force=False, ctx=SINGLE)
    save_checkpoint(exp / "checkpoints" / "epoch-1.pt", {"step": 4})
    new = SystemConfig()
    new.optim.epochs = 3
    assert prepare_exp_dir(exp, new, force=True, ctx=SINGLE) is None
    backups = list(tmp_path.glob("oskdft.bak-*"))
    assert len(backups) == 1
    assert (backups[0] / "checkpoints" / "epoch-1.pt").is_file()
    assert load_config(backups[0] / "config.yaml").optim.epochs == 100
    assert load_config(exp / "config.yaml").optim.epochs == 3
    assert not (exp / "checkpoints").exists()


def test_unloadable_saved_config_counts_as_different(tmp_path):
    save_config(SystemConfig(), tmp_path / "config.yaml")
    with open(tmp_path / "config.yaml", "a") as f:
        f.write("removed_section: {}\n")
    with pytest.raises(InputError, match="unreadable"):
        prepare_exp_dir(tmp_path, SystemConfig(), force=False, ctx=SINGLE)


def test_config_differences_of_nested_trees():
    assert config_differences({"a": {"b": [1, 2]}}, {"a": {"b": [1, 3]}}) == ["a.b"]
    assert config_differences({"a": 1}, {"a": 1}) == []
