"""egs/mini's stage 3: every system of run.conf, in its order, from its real config (epochs and
batches shrunk) on the tiny recipe. The real mini recipe runs end to end in tests/recipe."""

import re
import shutil
from pathlib import Path

from oskdft.config import load_config
from oskdft.model_dir import load_final
from oskdft.training.trainer import train_system
from tests.training.tiny_recipe import make_tiny_recipe

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"


def mini_systems():
    return re.search(r'^systems="([^"]+)"', (MINI / "run.conf").read_text(), re.M).group(1).split()


def test_every_mini_system_trains_in_the_recipe_order(tmp_path, monkeypatch):
    recipe = make_tiny_recipe(tmp_path)  # its own: exp/<system> names are the recipe's
    # The committed 12-layer teacher, where egs/mini's stage 0 installs it (teacher.path).
    shutil.copytree(MINI / "teacher", recipe / "data" / "teacher")
    monkeypatch.chdir(recipe)
    systems = mini_systems()
    assert systems[0] == "teacher_ft" and "oskdft" in systems
    for system in systems:
        config = MINI / "conf" / f"{system}.yaml"
        overrides = [
            "optim.epochs=2",
            "optim.batch_size=4",
            "train.max_steps_per_epoch=2",
            "train.num_workers=0",
            "train.progress_bar=false",
            "kd.decay_epochs=2",
            "teacher.mode=online",
        ]  # stage 2's cache is not made here
        if load_config(config).kd.until_epoch is not None:  # two-step: 1 epoch of each
            overrides += ["kd.until_epoch=1", "sv.from_epoch=1"]
        final = train_system(
            config,
            recipe / "data.yaml",
            recipe / "data",
            recipe / "exp" / system,
            overrides=overrides,
            device="cpu",
        )
        model, cfg, meta = load_final(final)
        assert meta["steps"] == 4 and len(meta["valid_eers"]) == 2
        assert 0 < meta["macs_per_second"]["ssl"] < meta["macs_per_second"]["total"]
        if cfg.ssl.source == "student":
            assert meta["teacher"] == "data/teacher"
            assert model.ssl.num_layers == cfg.ssl.num_layers == 2  # of the teacher's 12
