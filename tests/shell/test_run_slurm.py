"""utils/run_slurm.sh on a real single-node Slurm cluster started on localhost for these tests
(tests/shell/slurm_cluster.sh). Runs where Debian's slurm-wlm and munge packages are installed;
skipped elsewhere."""

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.shell.slurm import needs_slurm, slurm_cluster

HERE = Path(__file__).resolve().parent
RUNNER = str(HERE.parents[1] / "utils" / "run_slurm.sh")

pytestmark = [
    needs_slurm,
    pytest.mark.slow,  # Slurm's first scheduling pass comes a few seconds after it starts
]

# One job: records that it ran and what Slurm gave it; fails while the file fail.<index> exists.
JOB = """echo run >> runs.$1
echo "task=$SLURM_ARRAY_TASK_ID mem=$SLURM_MEM_PER_NODE threads=$OMP_NUM_THREADS"
scontrol show job "$SLURM_JOB_ID" | grep -o 'TimeLimit=[^ ]*'
[ ! -e fail.$1 ]
"""


@pytest.fixture(scope="module")
def slurm_env():
    """The environment of a client of a fresh single-node cluster, stopped after the tests."""
    with slurm_cluster(num_nodes=1) as env:
        yield env


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "job.sh").write_text(JOB)
    return tmp_path


def run(env, cwd, *args):
    return subprocess.run(
        [RUNNER, "--poll-interval", "0.2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def runs(cwd):
    return {int(p.suffix[1:]): len(p.read_text().splitlines()) for p in cwd.glob("runs.*")}


def test_array_with_a_failed_job_then_only_that_job_is_resubmitted(slurm_env, workdir):
    args = [
        "--mem",
        "100M",
        "--time",
        "0:05:00",
        "--job-key",
        "k1",
        "JOB=1:3",
        "log/job.JOB.log",
        "bash",
        "job.sh",
        "JOB",
    ]
    (workdir / "fail.2").touch()
    result = run(slurm_env, workdir, *args)
    assert result.returncode == 1, result.stderr
    assert "jobs 1,2,3 of JOB=1:3" in result.stderr
    assert "1 of 3 jobs failed" in result.stderr
    assert f"job 2: exit code 1, log: {workdir}/log/job.2.log" in result.stderr
    assert runs(workdir) == {1: 1, 2: 1, 3: 1}

    log1 = (workdir / "log" / "job.1.log").read_text().splitlines()
    assert log1[0] == "# bash job.sh 1"
    assert log1[3:5] == ["task=1 mem=100 threads=1", "TimeLimit=00:05:00"], (
        "the memory and time requests reach Slurm"
    )
    assert log1[-1].startswith("# Ended (code 0)")
    assert (workdir / "log" / "slurm" / "job.JOB.sh").exists(), "the sbatch script is by the logs"

    (workdir / "fail.2").unlink()
    result = run(slurm_env, workdir, *args)
    assert result.returncode == 0, result.stderr
    assert "2 of 3 jobs already succeeded" in result.stderr
    assert "jobs 2 of JOB=1:3" in result.stderr, "the array holds only the failed job"
    assert runs(workdir) == {1: 1, 2: 2, 3: 1}
    assert (
        (workdir / "log" / "job.2.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")
    )


def test_a_request_slurm_cannot_meet_is_reported(slurm_env, workdir):
    # The test cluster has no GPUs: sbatch refuses --gres=gpu:1.
    result = run(slurm_env, workdir, "--gpus", "1", "JOB=1:2", "log/g.JOB.log", "true")
    assert result.returncode == 1
    assert "sbatch refused the job array" in result.stderr
    assert "--gres=gpu:1" in result.stderr


def test_sigterm_cancels_the_array(slurm_env, workdir):
    runner = subprocess.Popen(
        [RUNNER, "--poll-interval", "0.2", "JOB=1:2", "log/long.JOB.log", "sleep", "60"],
        cwd=workdir,
        env=slurm_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        logs = [workdir / "log" / f"long.{i}.log" for i in (1, 2)]
        deadline = time.monotonic() + 20
        while not all(p.exists() and "# Started" in p.read_text() for p in logs):
            assert time.monotonic() < deadline, "the jobs did not start"
            time.sleep(0.1)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=20) == 143
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.wait(timeout=20)
    job_id = re.search(r"Slurm job (\d+)", runner.stderr.read()).group(1)
    deadline = time.monotonic() + 20
    while subprocess.run(
        ["squeue", "-h", "-j", job_id], env=slurm_env, capture_output=True, text=True
    ).stdout.strip():
        assert time.monotonic() < deadline, "the array was not cancelled"
        time.sleep(0.2)
