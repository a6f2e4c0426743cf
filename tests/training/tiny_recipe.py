"""A tiny recipe for the training tests: the toy corpus through stage 1, a random-weight
teacher in Hugging Face format, and system YAMLs small enough to train in seconds."""

from pathlib import Path
from typing import Any, Dict

import yaml

from oskdft.config import save_config
from oskdft.data.windows import make_windows_from_config
from oskdft.models.teacher import build_ssl_from_arch
from tests.data.toy_corpus import AUG_SETS, make_toy_corpus, toy_data_config
from tests.models.tiny import tiny_arch

TEACHER_DIR = "teacher"


def make_tiny_recipe(root: Path) -> Path:
    """``root/data`` (stages 0-1 of the toy corpus: 4 training speakers with 4 two-second-plus
    utterances each, 2 validation speakers), ``root/data.yaml`` and a teacher in
    ``root/teacher``; returns ``root``."""
    data_cfg = toy_data_config()
    data = make_toy_corpus(root)
    make_windows_from_config(data, data_cfg, "train", AUG_SETS)
    save_config(data_cfg, root / "data.yaml")
    build_ssl_from_arch(tiny_arch()).save_pretrained(root / TEACHER_DIR)
    return root


def tiny_system(**sections: Dict[str, Any]) -> Dict[str, Any]:
    """An OS-KDFT system on the tiny teacher (online), 2 epochs of 4 steps of 4 windows;
    ``sections`` update it key by key, e.g. ``kd={"loss": "none"}``."""
    system: Dict[str, Any] = {
        "teacher": {"path": TEACHER_DIR, "mode": "online"},
        "ssl": {"num_layers": 2, "adapter_dim": 8},
        "backend": {"channels": 16, "embed_dim": 8},
        "augment": {"prob": 0.5, "choices": {"none": 1.0, "noise": 1.0, "music": 1.0}},
        "kd": {"decay_epochs": 2},
        "optim": {
            "epochs": 2,
            "batch_size": 4,
            "backend_lr": 1.0e-3,
            "ssl_lr": 1.0e-3,
            "ssl_warmup_epochs": 1,
        },
        "train": {
            "num_workers": 0,
            "num_threads": 1,
            "log_every": 2,
            "keep_last": 1,
            "checkpoint_every": 1,
            "progress_bar": False,
        },
        "eval": {"batch_seconds": 20.0},
    }
    for section, values in sections.items():
        system.setdefault(section, {}).update(values)
    return system


def write_system(root: Path, name: str, system: Dict[str, Any]) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(system))
    return path
