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


WINDOWS = {"data/.stage1.done": "a1"}


def test_equal_inputs_resume_and_other_inputs_are_refused_naming_them(tmp_path):
    cfg = SystemConfig()
    prepare_exp_dir(tmp_path, cfg, force=False, ctx=SINGLE, input_hashes=WINDOWS)
    save_checkpoint(tmp_path / "checkpoints" / LATEST, {"step": 3})
    assert (
        prepare_exp_dir(tmp_path, cfg, force=False, ctx=SINGLE, input_hashes=dict(WINDOWS)).name
        == LATEST
    )
    retrained = {**WINDOWS, "exp/teacher_ft/.stage3.done": "t2"}
    with pytest.raises(
        InputError,
        match=r"other inputs; changed since: "
        r"exp/teacher_ft/\.stage3\.done.*--force true",
    ):
        prepare_exp_dir(tmp_path, cfg, force=False, ctx=SINGLE, input_hashes=retrained)
    with pytest.raises(InputError, match=r"changed since: data/\.stage1\.done"):
        prepare_exp_dir(
            tmp_path, cfg, force=False, ctx=SINGLE, input_hashes={"data/.stage1.done": "a2"}
        )
    assert (tmp_path / "checkpoints" / LATEST).is_file(), "a refused run is left as it was"


def test_a_run_recording_no_inputs_is_refused_when_inputs_are_given(tmp_path):
    prepare_exp_dir(tmp_path, SystemConfig(), force=False, ctx=SINGLE)
    with pytest.raises(InputError, match="records no input hashes"):
        prepare_exp_dir(tmp_path, SystemConfig(), force=False, ctx=SINGLE, input_hashes=WINDOWS)


def test_force_starts_over_on_other_inputs_and_records_them(tmp_path):
    exp = tmp_path / "oskdft"
    prepare_exp_dir(exp, SystemConfig(), force=False, ctx=SINGLE, input_hashes=WINDOWS)
    save_checkpoint(exp / "checkpoints" / LATEST, {"step": 3})
    new = {"data/.stage1.done": "a2"}
    assert prepare_exp_dir(exp, SystemConfig(), force=True, ctx=SINGLE, input_hashes=new) is None
    (backup,) = tmp_path.glob("oskdft.bak-*")
    assert (backup / "checkpoints" / LATEST).is_file()
    assert prepare_exp_dir(exp, SystemConfig(), force=False, ctx=SINGLE, input_hashes=new) is None
