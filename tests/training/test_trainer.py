"""Stage 3 end to end on the tiny recipe: what a run writes, the baselines' loss phases,
a cached teacher, and a run killed with SIGKILL that resumes to the same weights."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from oskdft.cache import cache_teacher_job, merge_teacher_cache
from oskdft.config import load_config, load_data_config
from oskdft.model_dir import load_final
from oskdft.models.teacher import load_teacher
from oskdft.training.trainer import train_system
from tests.training.tiny_recipe import TEACHER_DIR, tiny_system, write_system

REPO = Path(__file__).resolve().parents[2]


def train(recipe, name, system, **kwargs):
    config = write_system(recipe, name, system)
    return train_system(
        config,
        recipe / "data.yaml",
        recipe / "data",
        recipe / "exp" / name,
        device="cpu",
        teacher_cache=recipe / "exp" / "teacher_cache",
        **kwargs,
    )


def records(exp_dir, kind):
    lines = (exp_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_oskdft_run_writes_checkpoints_metrics_and_final(recipe, monkeypatch):
    monkeypatch.chdir(recipe)  # teacher.path is relative to the working directory
    final = train(recipe, "oskdft", tiny_system())
    exp = final.parent
    model, cfg, meta = load_final(final)
    assert cfg.data == load_data_config(recipe / "data.yaml")  # the data section folded in
    assert load_config(exp / "config.yaml") == cfg
    assert meta["teacher"] == TEACHER_DIR and meta["epochs"] == 2 and meta["steps"] == 8
    assert meta["best_epoch"] in (1, 2) and len(meta["valid_eers"]) == 2
    assert meta["valid_eer"] == meta["valid_eers"][meta["best_epoch"] - 1]
    assert "ssl_time_ratio" not in meta and meta["train_seconds"] > 0
    assert 0 < meta["macs_per_second"]["ssl"] < meta["macs_per_second"]["total"]
    best = torch.load(exp / "checkpoints" / "best.pt", weights_only=True)
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    # keep_last 1: the last epoch checkpoint only; no mid-epoch checkpoint after the end
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["best.pt", "epoch-2.pt"]
    steps = records(exp, "step")
    assert [r["step"] for r in steps] == [2, 4, 6, 8]
    assert "kd" in steps[0] and steps[0]["kd_weight"] == 0.5  # (E - e) / E, E = 2
    assert "kd" not in steps[-1]  # the KD weight is 0 in the last epoch
    assert steps[0]["lr_adapters"] == pytest.approx(10 * steps[0]["lr_backend"])
    assert [r["valid_eer"] for r in records(exp, "epoch")] == meta["valid_eers"]
    assert "validation EER" in (exp / "log" / "train.log").read_text()


def test_two_step_baseline_distils_then_fine_tunes(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    system = tiny_system(
        ssl={"num_layers": 2, "adapters": False},
        kd={
            "loss": "distilhubert",
            "target_layers": [1, 3],
            "scale": 1.0,
            "schedule": "constant",
            "until_epoch": 1,
        },
        sv={"from_epoch": 1},
    )
    exp = train(recipe, "distilhubert", system).parent
    phases = {(r["epoch"], "kd" in r, "sv" in r) for r in records(exp, "step")}
    assert phases == {(1, True, False), (2, False, True)}
    state = torch.load(exp / "checkpoints" / "epoch-2.pt", weights_only=True)
    assert set(state["kd_loss"]) == {
        "heads.1.weight",
        "heads.1.bias",
        "heads.3.weight",
        "heads.3.bias",
    }
    # fine-tuning started with a fresh Adam: its moments hold epoch 2's 4 steps only
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {4.0}


def test_teacher_ft_from_scratch_saves_a_teacher(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    arch = load_teacher(TEACHER_DIR).hf_model.config.to_dict()
    system = tiny_system(
        teacher={"path": None},
        kd={"loss": "none"},
        ssl={"source": "scratch", "arch": arch, "adapters": False},
        backend={"input": "weighted_sum"},
    )
    final = train(recipe, "teacher_ft", system)
    teacher = load_teacher(str(final / "ssl"))
    assert teacher.num_layers == 3


def test_an_fbank_system_trains_without_a_teacher(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    system = tiny_system(
        teacher={"path": None},
        kd={"loss": "none"},
        ssl={"source": "fbank", "fbank": {"num_mel_bins": 24}},
        backend={"instance_norm": False},
    )
    final = train(recipe, "ecapa_fbank", system)
    assert not (final / "ssl").exists()
    model, cfg, meta = load_final(final)
    assert cfg.ssl.source == "fbank" and model.ssl.hidden_size == 24
    assert meta["teacher"] is None and meta["params"]["ssl"] == 0
    checkpoint = torch.load(final.parent / "checkpoints" / "epoch-2.pt", weights_only=True)
    assert {group["name"] for group in checkpoint["optimizer"]["param_groups"]} == {"backend"}


def test_cached_teacher_gives_the_online_teacher_targets(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    online = tiny_system(optim={"epochs": 1}, train={"max_steps_per_epoch": 2})
    cached = tiny_system(
        teacher={"mode": "cached"}, optim={"epochs": 1}, train={"max_steps_per_epoch": 2}
    )
    config = write_system(recipe, "cached", cached)
    for job in (1, 2):
        cache_teacher_job(
            config,
            recipe / "data.yaml",
            recipe / "data",
            recipe / "exp" / "teacher_cache",
            job,
            2,
            device="cpu",
        )
    merge_teacher_cache(
        config, recipe / "data.yaml", recipe / "data", recipe / "exp" / "teacher_cache", 2
    )
    kd = {}
    for name, system in (("online", online), ("cached", cached)):
        kd[name] = records(train(recipe, name, system).parent, "step")[0]["kd"]
    assert kd["cached"] == pytest.approx(kd["online"], rel=1e-2)  # float16 storage


def test_sigkilled_run_resumes_to_the_same_weights(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    system = tiny_system(optim={"epochs": 3})
    reference = train(recipe, "reference", system)

    config = write_system(recipe, "killed", system)
    exp = recipe / "exp" / "killed"
    latest = exp / "checkpoints" / "latest.pt"
    command = [
        sys.executable,
        str(REPO / "local" / "train.py"),
        "--device",
        "cpu",
        "--config",
        str(config),
        "--data-config",
        str(recipe / "data.yaml"),
        "--teacher-cache",
        str(recipe / "exp" / "teacher_cache"),
        str(recipe / "data"),
        str(exp),
    ]
    process = subprocess.Popen(
        command, cwd=recipe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not (exp / "checkpoints" / "epoch-1.pt").is_file() or not latest.is_file():
        assert process.poll() is None and time.monotonic() < deadline, "never checkpointed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (exp / "final").exists()

    resumed = train(recipe, "killed", system)  # stage 3 rerun: continues from latest.pt
    assert "resumed from" in (exp / "log" / "train.log").read_text()
    want = torch.load(reference / "model.pt", weights_only=True)
    got = torch.load(resumed / "model.pt", weights_only=True)
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    steps = [r["step"] for r in records(exp, "step")]
    assert steps == sorted(set(steps))  # no step logged twice across the kill
    assert (
        json.loads((resumed / "meta.json").read_text())["valid_eers"]
        == json.loads((reference / "meta.json").read_text())["valid_eers"]
    )


@pytest.mark.parametrize("reset", [False, True])
def test_adam_moments_kept_across_epochs_unless_reset(recipe, monkeypatch, reset):
    monkeypatch.chdir(recipe)
    name = f"reset_{reset}"
    train(
        recipe,
        name,
        tiny_system(optim={"reset_each_epoch": reset}, train={"max_steps_per_epoch": 2}),
    )
    state = torch.load(recipe / "exp" / name / "checkpoints" / "epoch-2.pt", weights_only=True)
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {2.0 if reset else 4.0}  # 2 steps per epoch


def test_final_is_the_average_of_the_last_epochs(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    final = train(recipe, "averaged", tiny_system(train={"average_last": 2, "keep_last": 1}))
    checkpoints = recipe / "exp" / "averaged" / "checkpoints"
    states = [
        torch.load(checkpoints / f"epoch-{e}.pt", weights_only=True)["model"] for e in (1, 2)
    ]  # both kept: keep_last is raised to average_last
    model = torch.load(final / "model.pt", weights_only=True)
    weight = "ecapa.fc.weight"
    assert torch.allclose(model[weight], (states[0][weight] + states[1][weight]) / 2)
    meta = json.loads((final / "meta.json").read_text())
    assert meta["averaged_checkpoints"] == ["epoch-1.pt", "epoch-2.pt"]
    assert meta["best_epoch"] is None and 0.0 <= meta["valid_eer"] <= 1.0


def test_the_originals_training_options_train_and_repeat_exactly(recipe, monkeypatch):
    # SpecAugment (drawn with numpy), LayerDrop, the doubled front end, the original's rates,
    # and selection by the fused score with the original's crop branches.
    monkeypatch.chdir(recipe)
    system = tiny_system(
        ssl={
            "spec_augment": True,
            "layer_drop": True,
            "doubled_front_end": True,
            "adapter_init": "normal",
            "doubled_residual": True,
        },
        optim={"backend_schedule": "restarts", "ssl_schedule": "backend"},
        eval={"batch_seconds": 20.0, "valid_score": "fused", "original_crop_branches": True},
    )
    first, second = (train(recipe, name, system) for name in ("paper_a", "paper_b"))
    want = torch.load(first / "model.pt", weights_only=True)
    got = torch.load(second / "model.pt", weights_only=True)
    assert "ssl.model.masked_spec_embed" in want
    assert all(torch.equal(want[k], got[k]) for k in want)
    model, cfg, _ = load_final(second)
    assert model.ssl.spec_augment and cfg.eval.original_crop_branches


def test_front_end_distillation_runs_before_epoch_1_and_not_again_on_resume(recipe, monkeypatch):
    monkeypatch.chdir(recipe)
    system = tiny_system(
        ssl={"thin_cnn_dim": 8},
        kd={"front_end": "mse", "front_end_steps": 6},  # 6 steps: more than an epoch's 4
        optim={"epochs": 1},
        train={"max_steps_per_epoch": 2, "log_every": 3},
    )
    exp = train(recipe, "front_end", system).parent
    log = (exp / "log" / "train.log").read_text()
    assert "front-end distillation step 3/6" in log and "front-end distillation step 6/6" in log
    assert log.index("front-end distillation done") < log.index("epoch 1/1 step")
    (exp / "final").rename(exp / "final.old")  # rerun: resumes from epoch-1.pt
    train(recipe, "front_end", system)
    log = (exp / "log" / "train.log").read_text()
    assert "resumed from" in log and log.count("front-end distillation done") == 1
