"""egs/mini_pretrain, shortened: its stage scripts (stage 0 is egs/mini's prepare.py) on a tiny
pool and a few training steps, so the recipe that made the committed teacher cannot rot; the
saved teacher loads with transformers and has the declared shape; the pool's speakers are
disjoint from egs/mini's and at least 5x its fine-tuning speakers."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoConfig, AutoModel

from oskdft.config import load_config, load_data_config
from oskdft.data.kaldi_dir import read_data_dir
from oskdft.models.teacher import load_teacher
from oskdft.recipes.synthetic import MiniCorpusSpec

REPO = Path(__file__).resolve().parents[2]
PRETRAIN = REPO / "egs" / "mini_pretrain"
MINI = REPO / "egs" / "mini"


def conf_value(recipe: Path, name: str) -> str:
    return re.search(rf'^{name}="([^"]*)"', (recipe / "run.conf").read_text(), re.M).group(1)


def prepare_opts(recipe: Path) -> dict:
    words = shlex.split(conf_value(recipe, "prepare_opts"))
    return {k.lstrip("-"): v for k, v in zip(words[::2], words[1::2], strict=True)}


def run(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_pool_is_disjoint_from_mini_and_five_times_its_training_speakers():
    pool, mini = prepare_opts(PRETRAIN), prepare_opts(MINI)
    assert pool["seed"] == mini["seed"]  # same seed: disjoint because the indices are
    first = int(pool["first-speaker"])
    spec = MiniCorpusSpec()  # egs/mini's sizes are the defaults
    assert "first-speaker" not in mini and first >= spec.train_speakers + spec.test_speakers
    held_out = load_data_config(PRETRAIN / "conf" / "data.yaml").valid_speakers
    mini_ft = spec.train_speakers - load_data_config(MINI / "conf" / "data.yaml").valid_speakers
    assert int(pool["train-speakers"]) - held_out >= 5 * mini_ft


@pytest.mark.slow  # four stage scripts end to end
def test_a_shortened_pretraining_saves_a_12_layer_teacher(tmp_path):
    data = tmp_path / "data"
    run(
        PRETRAIN / "prepare.py",
        "--seed",
        "0",
        "--first-speaker",
        "1000",
        "--train-speakers",
        "6",
        "--test-speakers",
        "12",
        data,
        cwd=tmp_path,
    )
    assert all(spk.startswith("id11") for spk in read_data_dir(data / "train").utt2spk.values())
    aug_sets = conf_value(PRETRAIN, "aug_sets")
    run(
        REPO / "local" / "prepare_manifests.py",
        "--train-set",
        "train",
        "--eval-sets",
        "test",
        "--aug-sets",
        aug_sets,
        "--num-threads",
        "1",
        data,
        cwd=tmp_path,
    )
    data_config = tmp_path / "data.yaml"  # the recipe's, with a validation split of 2 speakers
    data_config.write_text(
        yaml.safe_dump(
            {
                "base": str(PRETRAIN / "conf" / "data.yaml"),
                "valid_speakers": 2,
                "valid_utts_per_speaker": 4,
                "valid_trials": 20,
                "backend_utts_per_speaker": 2,
            }
        )
    )
    run(
        REPO / "local" / "make_windows.py",
        "--data-config",
        data_config,
        "--train-set",
        "train",
        "--aug-sets",
        aug_sets,
        data,
        cwd=tmp_path,
    )
    config = PRETRAIN / "conf" / "teacher.yaml"
    run(
        REPO / "local" / "train.py",
        "--device",
        "cpu",
        "--config",
        config,
        "--data-config",
        data_config,
        data,
        "exp/teacher",
        "--override",
        "optim.epochs=1",
        "optim.batch_size=4",
        "train.max_steps_per_epoch=2",
        "train.progress_bar=false",
        cwd=tmp_path,
    )

    ssl = tmp_path / "exp" / "teacher" / "final" / "ssl"
    assert {"config.json", "model.safetensors"} <= {f.name for f in ssl.iterdir()}
    arch = load_config(config).ssl.arch
    hf_config = AutoConfig.from_pretrained(ssl)
    assert hf_config.model_type == arch["model_type"] == "wav2vec2"
    assert hf_config.num_hidden_layers == arch["num_hidden_layers"] == 12
    assert hf_config.hidden_size == arch["hidden_size"]
    assert list(hf_config.conv_dim) == arch["conv_dim"]
    assert type(AutoModel.from_pretrained(ssl)).__name__ == "Wav2Vec2Model"
    assert load_teacher(str(ssl)).num_layers == 12
