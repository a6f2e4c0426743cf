"""bench/train_gpu.py with tiny shapes on the CPU: both modes train and the table prints."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_benchmark_prints_both_modes_and_the_ratio():
    output = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_gpu.py"), "--tiny"],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(online|cached)\s+([\d.]+)\s+[\d.]+\s+-$", output, re.M)
    }
    assert set(rows) == {"online", "cached"} and all(v > 0 for v in rows.values())
    ratio = float(re.search(r"cached/online speed ratio: ([\d.]+)x", output).group(1))
    assert abs(ratio - rows["cached"] / rows["online"]) < 0.01 + 0.01 * ratio
