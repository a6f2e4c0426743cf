"""utils/run_local.sh: JOB=1:N jobs with one log each, failure reports, reruns of failed jobs."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

RUNNER = str(Path(__file__).resolve().parents[2] / "utils" / "run_local.sh")

# One job: records that it ran and its thread counts; fails while the file fail.<index> exists.
JOB = """echo run >> runs.$1
echo "threads=$OMP_NUM_THREADS,$MKL_NUM_THREADS"
[ ! -e fail.$1 ]
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "job.sh").write_text(JOB)
    return tmp_path


def run(cwd, *args, env=None):
    return subprocess.run(
        [RUNNER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def runs(cwd):
    """How often each job ran, by index."""
    return {int(p.suffix[1:]): len(p.read_text().splitlines()) for p in cwd.glob("runs.*")}


def test_each_job_gets_its_index_and_a_log_with_header_and_footer(workdir):
    result = run(workdir, "JOB=1:3", "log/job.JOB.log", "bash", "job.sh", "JOB")
    assert result.returncode == 0, result.stderr
    assert runs(workdir) == {1: 1, 2: 1, 3: 1}
    for i in (1, 2, 3):
        lines = (workdir / "log" / f"job.{i}.log").read_text().splitlines()
        assert lines[0] == f"# bash job.sh {i}"
        assert re.fullmatch(rf"# Started at [\d-]+ [\d:]+ on \S+ \(job {i}\)", lines[1])
        assert lines[3].startswith("threads=")
        assert re.fullmatch(
            r"# Ended \(code 0\) at [\d-]+ [\d:]+, elapsed time \d+ seconds", lines[-1]
        )


def test_arguments_reach_the_command_unchanged(workdir):
    # No shell reads the command again: no word splitting, expansion or pipe.
    result = run(
        workdir, "JOB=2:2", "log/p.JOB.log", "printf", "[%s]\\n", "a b", "$HOME", "x;JOB|y"
    )
    assert result.returncode == 0, result.stderr
    lines = (workdir / "log" / "p.2.log").read_text().splitlines()
    assert lines[3:6] == ["[a b]", "[$HOME]", "[x;2|y]"]
    assert lines[0] == "# printf '[%s]\\n' 'a b' '$HOME' 'x;2|y'", "quoted only where needed"


def test_failure_is_reported_and_a_rerun_repeats_only_the_failed_job(workdir):
    (workdir / "fail.2").touch()
    args = ["--job-key", "inputs-v1", "JOB=1:3", "log/job.JOB.log", "bash", "job.sh", "JOB"]
    result = run(workdir, *args)
    assert result.returncode == 1
    log2 = workdir / "log" / "job.2.log"
    assert "1 of 3 jobs failed" in result.stderr
    assert f"job 2: exit code 1, log: {log2}" in result.stderr
    assert "# Ended (code 1)" in result.stderr, "the end of the failed log is shown"
    assert runs(workdir) == {1: 1, 2: 1, 3: 1}, "the other jobs still ran"

    result = run(workdir, *args)
    assert result.returncode == 1, "still failing"
    assert runs(workdir) == {1: 1, 2: 2, 3: 1}

    (workdir / "fail.2").unlink()
    result = run(workdir, *args)
    assert result.returncode == 0, result.stderr
    assert runs(workdir) == {1: 1, 2: 3, 3: 1}
    assert "2 of 3 jobs already succeeded" in result.stderr
    assert "# Ended (code 0)" in log2.read_text()

    assert run(workdir, *args).returncode == 0
    assert runs(workdir) == {1: 1, 2: 3, 3: 1}, "all done: nothing runs again"

    args[1] = "inputs-v2"
    assert run(workdir, *args).returncode == 0
    assert runs(workdir) == {1: 2, 2: 4, 3: 2}, "a new key (new inputs) reruns every job"

    assert run(workdir, *args, "extra-arg").returncode == 0
    assert runs(workdir) == {1: 3, 2: 5, 3: 3}, "a changed command reruns every job"


def test_without_job_key_every_job_runs_each_time(workdir):
    for _ in range(2):
        assert run(workdir, "JOB=1:2", "log/job.JOB.log", "bash", "job.sh", "JOB").returncode == 0
    assert runs(workdir) == {1: 2, 2: 2}


def test_job_count_at_once_and_threads(workdir):
    # Each job counts the jobs running beside it (itself included) while it sleeps.
    (workdir / "slot.sh").write_text(
        "mkdir -p running; touch running/$1; sleep 0.5; ls running | wc -l > seen.$1\n"
        'echo "$OMP_NUM_THREADS $MKL_NUM_THREADS" > threads.$1; rm running/$1\n'
    )
    job = ["JOB=1:4", "log/slot.JOB.log", "bash", "slot.sh", "JOB"]

    def most_at_once():
        return max(int(p.read_text()) for p in workdir.glob("seen.*"))

    assert run(workdir, "--max-jobs-run", "2", *job).returncode == 0
    assert most_at_once() <= 2
    cores = len(os.sched_getaffinity(0))
    threads = str(max(1, cores // 2))
    assert {p.read_text().split()[0] for p in workdir.glob("threads.*")} == {threads}
    assert {p.read_text().split()[1] for p in workdir.glob("threads.*")} == {threads}

    assert run(workdir, "--max-jobs-run", "4", *job, env={"OMP_NUM_THREADS": "5"}).returncode == 0
    assert most_at_once() >= 3, "with room for 4, the jobs overlap"
    assert {p.read_text().split()[0] for p in workdir.glob("threads.*")} == {"5"}, (
        "a thread count the caller set is kept"
    )


def test_one_job_without_a_range_substitutes_nothing(workdir):
    result = run(workdir, "log/one.log", "echo", "JOB")
    assert result.returncode == 0, result.stderr
    assert (workdir / "log" / "one.log").read_text().splitlines()[3] == "JOB"


def test_usage_errors(workdir):
    result = run(workdir, "JOB=1:2", "log/same.log", "true")
    assert result.returncode == 1
    assert "need one log each" in result.stderr
    result = run(workdir, "--nj", "2", "JOB=1:2", "log/x.JOB.log", "true")
    assert result.returncode == 1 and "unknown option --nj" in result.stderr
    assert run(workdir, "JOB=1:2").returncode == 1


def test_slurm_options_are_accepted_and_ignored(workdir):
    result = run(
        workdir,
        "--gpus",
        "1",
        "--mem",
        "8G",
        "--time",
        "1:00:00",
        "--partition",
        "p",
        "--extra",
        "--qos=high",
        "JOB=1:2",
        "log/job.JOB.log",
        "bash",
        "job.sh",
        "JOB",
    )
    assert result.returncode == 0, result.stderr
    assert runs(workdir) == {1: 1, 2: 1}


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, what, hang_guard=120):
    """Polls until ``condition()`` holds. The deadline only stops a hang: a busy machine may be
    slow, but a correct runner gets there."""
    deadline = time.monotonic() + hang_guard
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {hang_guard} s: {what}"
        time.sleep(0.05)


def test_sigterm_stops_every_job_and_what_it_started(workdir):
    # Each job starts a child of its own and waits for it; the child outlives the hang guards,
    # so only the runner's SIGTERM stops it in time.
    (workdir / "long.sh").write_text("sleep 600 & echo $! > tmp.$1; mv tmp.$1 child.$1\nwait\n")
    runner = subprocess.Popen(
        # Both jobs at once, whatever the number of cores.
        [RUNNER, "--max-jobs-run", "2", "JOB=1:2", "log/long.JOB.log", "bash", "long.sh", "JOB"],
        cwd=workdir,
        stderr=subprocess.PIPE,
        text=True,
    )
    children = []
    try:
        wait_until(lambda: len(list(workdir.glob("child.*"))) == 2, "both jobs' children")
        children = [int(p.read_text()) for p in workdir.glob("child.*")]
        assert all(alive(pid) for pid in children)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) == 143
        wait_until(lambda: not any(alive(pid) for pid in children), "the children to stop")
    finally:
        if runner.poll() is None:
            runner.terminate()
            runner.wait(timeout=120)
        for pid in children:  # leave nothing behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert re.search(r"stopping the running jobs: [12] [12]$", runner.stderr.read(), re.M)


def test_the_core_count_is_not_the_callers_thread_count(workdir):
    # Under OMP_NUM_THREADS=1 (one thread per job), nproc says 1: the jobs ran one at a time.
    cores = len(os.sched_getaffinity(0))
    result = run(
        workdir, "JOB=1:2", "log/job.JOB.log", "bash", "job.sh", "JOB", env={"OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert f"running 2 jobs, {min(2, cores)} at a time, with 1 threads each" in result.stderr
