"""Shared by the shell tests: run a bash script that sources this checkout's utils/*.sh, a tiny
recipe for run.sh's stage 3, and a run.sh working directory whose job runner only records what
it is asked to train."""

import os
import subprocess
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[2] / "utils"


@pytest.fixture
def bash(tmp_path):
    """``bash(script, *args, env=None)``: writes ``script`` to tmp_path/caller.sh and runs
    ``bash caller.sh args...`` in tmp_path, with ``$UTILS`` naming the utils/ directory; returns
    the CompletedProcess (text)."""

    def run(script: str, *args: str, env=None, timeout: float = 30) -> subprocess.CompletedProcess:
        path = tmp_path / "caller.sh"
        path.write_text(script)
        full_env = {**os.environ, "UTILS": str(UTILS), **(env or {})}
        return subprocess.run(
            ["bash", path.name, *args],
            cwd=tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A working directory for ``run.sh --dir DIR --stage 3``: the tiny training recipe (stages
    0-1 done by make_tiny_recipe, so data/.stage1.done is written by hand) and a system of 1
    epoch of 2 steps in it, DIR/tiny.yaml."""
    # Imported here: it imports torch and lhotse, which the other shell tests do without.
    from tests.training.tiny_recipe import make_tiny_recipe, tiny_system, write_system

    root = make_tiny_recipe(tmp_path_factory.mktemp("recipe"))
    (root / "data" / ".stage1.done").write_text("hash: made by make_tiny_recipe\n")
    write_system(
        root,
        "tiny",
        tiny_system(optim={"epochs": 1, "batch_size": 4}, train={"max_steps_per_epoch": 2}),
    )
    return root


# Stands in for the job runner: run.sh calls it as `RUNNER --gpus G --num-nodes N LOG train...`,
# in the working directory, with the experiment directory last.
RUNNER = """#!/usr/bin/env bash
echo "${!#}" >> runs.txt
echo "$*" >> commands.txt
"""


@pytest.fixture
def work(tmp_path):
    """tmp_path/work, with stage 1 done (by hand), and the runner at tmp_path/runner.sh."""
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / ".stage1.done").write_text("hash: by hand\n")
    runner = tmp_path / "runner.sh"
    runner.write_text(RUNNER)
    runner.chmod(0o755)
    return tmp_path / "work"
