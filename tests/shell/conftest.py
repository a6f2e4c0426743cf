"""Shared by the shell tests: run a bash script that sources this checkout's utils/*.sh."""
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
        return subprocess.run(["bash", path.name, *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run
