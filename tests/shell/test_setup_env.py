"""utils/setup_env.sh, run from a copy beside a fake setup.py, with fake interpreters that log
what they are asked to do instead of installing anything."""

import os
import shutil
import stat
import subprocess
from pathlib import Path

UTILS = Path(__file__).resolve().parents[2] / "utils"

# A python whose pip works: logs its arguments to calls.txt beside the repo.
GOOD_PYTHON = """#!/usr/bin/env bash
echo "venv python $*" >> "{root}/calls.txt"
"""
# The bin/python that a `python3 -m venv` failing at ensurepip leaves behind: no pip.
BROKEN_PYTHON = """#!/usr/bin/env bash
[ "$1 $2" = "-m pip" ] && {{ echo "No module named pip" >&2; exit 1; }}
exit 0
"""
# The system python3 given as $PYTHON: `-m venv [--clear] DIR` makes DIR with a working python.
SYSTEM_PYTHON = """#!/usr/bin/env bash
echo "system python $*" >> "{root}/calls.txt"
dir=${{!#}}
mkdir -p "$dir/bin"
cat > "$dir/bin/python" <<'PY'
{good}PY
chmod +x "$dir/bin/python"
"""


def write_exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def setup(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(root / "python3")}
    return subprocess.run(
        ["bash", str(root / "utils" / "setup_env.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def calls(root: Path):
    path = root / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


def make_repo(tmp_path: Path) -> Path:
    (tmp_path / "utils").mkdir()
    shutil.copy(UTILS / "setup_env.sh", tmp_path / "utils")
    (tmp_path / "setup.py").write_text("# v1\n")
    good = GOOD_PYTHON.format(root=tmp_path)
    write_exe(tmp_path / "python3", SYSTEM_PYTHON.format(root=tmp_path, good=good))
    return tmp_path


def test_a_venv_without_pip_is_made_again(tmp_path):
    root = make_repo(tmp_path)
    write_exe(root / ".venv" / "bin" / "python", BROKEN_PYTHON.format())
    result = setup(root)
    assert result.returncode == 0, result.stderr
    assert calls(root)[0] == f"system python -m venv --clear {root}/.venv"
    assert any("pip install --quiet -e" in c for c in calls(root))
    assert (root / ".venv" / ".oskdft-installed").is_file()

    before = calls(root)
    assert setup(root).returncode == 0
    assert calls(root) == before, "installed and unchanged: nothing to do"


def test_a_working_venv_is_kept_and_only_reinstalled(tmp_path):
    root = make_repo(tmp_path)
    write_exe(root / ".venv" / "bin" / "python", GOOD_PYTHON.format(root=root))
    assert setup(root).returncode == 0
    assert not any(c.startswith("system python") for c in calls(root))
    assert any("pip install --quiet -e" in c for c in calls(root))
