"""The experiment directory of stage 3: start, resume, or refuse; never destroy a run.

- No earlier run: start; rank 0 writes ``config.yaml`` (the merged config).
- An earlier run with an equal ``config.yaml`` and equal inputs: resume from its newest
  checkpoint.
- An earlier run with another config, or trained on other inputs (``inputs.yaml``: the hashes
  of what run.sh feeds it besides the config, e.g. the training windows and the teacher):
  refuse, naming the keys or inputs that differ, unless ``force``.
- ``force``: the earlier run is moved aside whole to ``<exp_dir>.bak-<timestamp>`` and a new
  one starts.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from oskdft.config import SystemConfig, load_config, save_config, to_dict
from oskdft.layout import CONFIG_NAME, INPUTS_NAME
from oskdft.training.checkpoint import CHECKPOINT_DIR, newest_checkpoint
from oskdft.training.distributed import DistContext, barrier, broadcast_from_main
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write


def prepare_exp_dir(
    exp_dir: Pathlike,
    cfg: SystemConfig,
    force: bool,
    ctx: DistContext,
    input_hashes: Optional[Dict[str, str]] = None,
) -> Optional[Path]:
    """Make ``exp_dir`` ready for ``cfg`` (see the module docstring); every rank calls it.

    :param input_hashes: name -> hash of each input besides the config (run.sh: the markers of
        the stages it depends on); None checks and records none.
    :return: the checkpoint to resume from, or None to start.
    :raises InputError: ``exp_dir`` holds a run of another config or of other inputs, and
        ``force`` is off.
    """
    exp_dir = Path(exp_dir)
    saved = exp_dir / CONFIG_NAME
    has_run = exp_dir.is_dir() and any(exp_dir.iterdir())
    # Every rank decides from the same files before rank 0 changes any of them.
    if has_run and not force and saved.is_file():
        differing = config_differences(_read_saved(saved), to_dict(cfg))
        if differing:
            _refuse(
                saved,
                "this experiment was run with another config; differing keys: "
                + ", ".join(differing[:10])
                + (" ..." if len(differing) > 10 else ""),
            )
        if input_hashes is not None:
            _check_inputs(exp_dir / INPUTS_NAME, input_hashes)
    barrier(ctx)
    if ctx.is_main:
        if has_run and force:
            moved = move_aside(exp_dir)
            logging.info("--force: moved the earlier run %s to %s", exp_dir, moved)
        exp_dir.mkdir(parents=True, exist_ok=True)
        if not saved.is_file():
            # The inputs first: config.yaml is what marks a run as started.
            if input_hashes is not None:
                with atomic_write(exp_dir / INPUTS_NAME) as f:
                    yaml.safe_dump(dict(input_hashes), f)
            save_config(cfg, saved)
    barrier(ctx)
    newest = newest_checkpoint(exp_dir / CHECKPOINT_DIR) if ctx.is_main else None
    return broadcast_from_main(ctx, newest)


def config_differences(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> List[str]:
    """Dotted keys whose values differ between two config trees.

    >>> config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0})
    ['a.c', 'd']
    """
    keys = sorted(set(old) | set(new))
    out: List[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def move_aside(exp_dir: Path) -> Path:
    """Rename ``exp_dir`` to a free ``<name>.bak-<timestamp>[-k]`` next to it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = exp_dir.with_name(f"{exp_dir.name}.bak-{stamp}")
    suffix = 1
    while target.exists():
        target = exp_dir.with_name(f"{exp_dir.name}.bak-{stamp}-{suffix}")
        suffix += 1
    os.replace(exp_dir, target)
    return target


def _check_inputs(path: Path, input_hashes: Dict[str, str]) -> None:
    """Refuse a run whose recorded input hashes (``path``) are missing or differ."""
    if not path.is_file():
        _refuse(
            path,
            "this experiment records no input hashes (it was started without "
            "--inputs-hash), so it may have been trained on other inputs",
        )
    old = yaml.safe_load(path.read_text()) or {}
    changed = sorted(
        name for name in set(old) | set(input_hashes) if old.get(name) != input_hashes.get(name)
    )
    if changed:
        _refuse(
            path,
            "this experiment was trained on other inputs; changed since: " + ", ".join(changed),
        )


def _refuse(path: Path, problem: str) -> None:
    raise InputError(
        path,
        problem,
        hint="rerun with --force true to start over (the old run "
        "is moved aside), or train under another name",
    )


def _read_saved(path: Path) -> Dict[str, Any]:
    """The saved config as a tree; one that no longer loads (e.g. a key since removed) counts
    as different from any config."""
    try:
        return to_dict(load_config(path))
    except InputError as e:
        return {"<unreadable config.yaml>": str(e)}
