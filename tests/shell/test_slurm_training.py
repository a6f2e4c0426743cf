"""Training on a real two-node Slurm cluster started on localhost (tests/shell/slurm_cluster.sh;
both nodes are this machine): utils/torchrun.sh under srun, utils/run_slurm.sh --num-nodes, and
run.sh's stage 3 with --cmd utils/run_slurm.sh on two CPU nodes. Runs where Debian's slurm-wlm
and munge packages are installed; skipped elsewhere."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shell.rank_probe import PROBE, read_reports
from tests.shell.slurm import free_port, needs_slurm, slurm_cluster

REPO = Path(__file__).resolve().parents[2]
RUNNER = str(REPO / "utils" / "run_slurm.sh")
TORCHRUN = str(REPO / "utils" / "torchrun.sh")
TIMEOUT = 300

pytestmark = [needs_slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_env():
    """The environment of a client of a fresh two-node cluster, stopped after the tests, with
    this interpreter first on PATH (the jobs run `python`)."""
    with slurm_cluster(num_nodes=2) as env:
        env = {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        yield env


def run(env, cwd, *command) -> subprocess.CompletedProcess:
    """Run ``command``; on a timeout, SIGTERM it and everything it started (utils/run_slurm.sh
    then cancels its Slurm job) before failing."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=60)
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def node_names(env):
    """The cluster's hosts in Slurm's order: the first is where a job's nodes meet."""
    nodelist = run(env, None, "sinfo", "-h", "-o", "%N").stdout.strip()
    return run(env, None, "scontrol", "show", "hostnames", nodelist).stdout.split()


def test_torchrun_under_srun_takes_rank_and_rendezvous_host_from_slurm(slurm_env, tmp_path):
    port = free_port()
    # The same line on both nodes, with a rank and a host that would fail if they were used.
    result = run(
        slurm_env,
        tmp_path,
        "srun",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--label",
        TORCHRUN,
        "--num-nodes",
        "2",
        "--node-rank",
        "1",
        "--rdzv-endpoint",
        f"no-such-host.invalid:{port}",
        "--rdzv-id",
        "probe",
        PROBE,
        "x",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = read_reports(result.stdout)
    assert [r["rank"] for r in found] == [0, 1]
    assert all(r["world_size"] == 2 and r["args"] == ["x"] for r in found)
    assert sorted(found[0]["nodes"]) == ["0", "1"], "one process on each node"
    run_id = found[0]["run_id"]
    assert re.fullmatch(r"probe-\d+", run_id) and found[1]["run_id"] == run_id, (
        "the Slurm job id is appended to the rendezvous id"
    )
    host = node_names(slurm_env)[0]
    for node in ("0", "1"):
        assert re.search(
            rf"^{node}: .*node {node} of 2 nodes, 1 process\(es\) each, "
            rf"rendezvous {host}:{port} id {run_id} \(from Slurm job",
            result.stderr,
            re.M,
        ), result.stderr


def test_torchrun_refuses_a_step_that_is_not_one_task_per_node(slurm_env, tmp_path):
    result = run(slurm_env, tmp_path, "srun", "--nodes=1", TORCHRUN, "--num-nodes", "2", PROBE)
    assert result.returncode != 0
    assert "--num-nodes is 2, but this srun step" in result.stderr
    assert "runs 1 tasks on 1 nodes" in result.stderr
    result = run(slurm_env, tmp_path, "srun", "--nodes=2", "--ntasks-per-node=1", TORCHRUN, PROBE)
    assert result.returncode != 0
    assert "--num-nodes is 1, but this srun step" in result.stderr
    assert not read_reports(result.stdout), "no node trained on its own"

    # A batch script that forgets srun would start node 0 alone.
    result = run(
        slurm_env,
        tmp_path,
        "sbatch",
        "--wait",
        "--nodes=2",
        "--output=batch.log",
        "--wrap",
        f"{TORCHRUN} --num-nodes 2 {PROBE}",
    )
    assert result.returncode != 0
    assert "outside an srun step" in (tmp_path / "batch.log").read_text()


NODE_JOB = """echo "node $SLURM_NODEID mem=$SLURM_MEM_PER_NODE" >> runs
[ ! -e fail.$SLURM_NODEID ] || exit 3
"""


def test_run_slurm_runs_one_job_on_several_nodes(slurm_env, tmp_path):
    (tmp_path / "job.sh").write_text(NODE_JOB)
    args = [
        RUNNER,
        "--poll-interval",
        "0.2",
        "--num-nodes",
        "2",
        "--mem",
        "200M",
        "--job-key",
        "k1",
        "log/train.log",
        "bash",
        "job.sh",
    ]
    result = run(slurm_env, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Slurm job \d+: on 2 node\(s\), log .*/log/train\.log", result.stderr)
    assert sorted((tmp_path / "runs").read_text().splitlines()) == [
        "node 0 mem=200",
        "node 1 mem=200",
    ], "once on each node, with --mem per node"
    log = (tmp_path / "log" / "train.log").read_text().splitlines()
    assert log[0] == (
        "# srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 "
        "--kill-on-bad-exit=1 --label bash job.sh"
    )
    assert log[-1].startswith("# Ended (code 0)")
    assert (tmp_path / "log" / ".train.log.done").exists()
    assert (tmp_path / "log" / "slurm" / "train.sh").exists()

    result = run(slurm_env, tmp_path, *args)
    assert result.returncode == 0
    assert "all 1 jobs already succeeded" in result.stderr
    assert len((tmp_path / "runs").read_text().splitlines()) == 2, "not run again"

    (tmp_path / "fail.1").touch()
    args[args.index("k1")] = "k2"
    result = run(slurm_env, tmp_path, *args)
    assert result.returncode == 1
    assert "job 1: exit code" in result.stderr
    assert f"log: {tmp_path}/log/train.log" in result.stderr
    assert "task 1: Exited with exit code 3" in (tmp_path / "log" / "train.log").read_text()
    assert not (tmp_path / "log" / ".train.log.done").exists()

    result = run(
        slurm_env, tmp_path, RUNNER, "--num-nodes", "2", "JOB=1:2", "log/x.JOB.log", "true"
    )
    assert result.returncode == 1
    assert "--num-nodes runs one job (on 2 nodes), not JOB=1:2" in result.stderr


def test_stage3_trains_on_two_slurm_nodes_through_run_sh(slurm_env, recipe):
    command = [
        "bash",
        str(REPO / "run.sh"),
        "--dir",
        str(recipe),
        "--train-config",
        str(recipe / "tiny.yaml"),
        "--stage",
        "3",
        "--stop-stage",
        "3",
        "--num-nodes",
        "2",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--cmd",
        "utils/run_slurm.sh --poll-interval 0.5 --mem 2G --time 0:10:00",
    ]
    result = run(slurm_env, REPO, *command)
    assert result.returncode == 0, result.stderr[-5000:]
    exp = recipe / "exp" / "tiny"
    slurm_log = recipe / "exp" / "log" / "tiny" / "train.node0.log"  # run.sh ran as node 0
    assert (exp / "final" / "model.pt").is_file()
    assert (exp / ".stage3.done").is_file()
    text = slurm_log.read_text()
    assert text.startswith("# srun --nodes=2 ")
    assert re.search(r"^0: .*node 0 of 2 nodes", text, re.M)
    assert re.search(r"^1: .*node 1 of 2 nodes", text, re.M)
    assert text.rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    train_log = (exp / "log" / "train.log").read_text()
    assert "on 2 process(es), device cpu" in train_log
    assert "the weights agree across 2 ranks" in train_log

    rerun = run(slurm_env, REPO, *command)
    assert rerun.returncode == 0
    assert "stage3 of exp/tiny done with the same config and inputs: skipping" in rerun.stderr
    assert slurm_log.read_text() == text, "no job submitted"

    # --force moves the earlier run aside, and the log of the new one stays where it was.
    result = run(slurm_env, REPO, *command, "--force", "true")
    assert result.returncode == 0, result.stderr[-5000:]
    text = slurm_log.read_text()
    assert text.count("# Started") == 1 and "--force: moved the earlier run exp/tiny" in text
    assert text.rstrip().splitlines()[-1].startswith("# Ended (code 0)")
    assert [p.name for p in recipe.glob("exp/tiny.bak-*/final/model.pt")] == ["model.pt"]
    assert (exp / "final" / "model.pt").is_file()

    marker = (exp / ".stage3.done").read_text()
    # train.py refuses the trained run's directory to another config.
    failed = run(slurm_env, REPO, *command, "--override", "optim.batch_size=2")
    assert failed.returncode == 1
    assert f"training tiny failed: see {slurm_log} and {exp}/log/train.log" in failed.stderr
    assert "another config; differing keys: optim.batch_size" in slurm_log.read_text()
    assert (exp / ".stage3.done").read_text() == marker, "the trained system is kept"
    assert (exp / "final" / "model.pt").is_file()
