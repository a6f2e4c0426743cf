"""utils/torchrun.sh without Slurm: a plain process, torchrun on one node, two nodes meeting at
a rendezvous on 127.0.0.1, the options it refuses; and run.sh's stage 3 through it, started on
two "nodes" (both this machine). Under Slurm: test_slurm_training.py."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from tests.shell.rank_probe import PROBE, read_reports
from tests.shell.slurm import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TORCHRUN = str(REPO / "utils" / "torchrun.sh")
TIMEOUT = 120


def clean_env() -> Dict[str, str]:
    """This environment without Slurm's variables (the tests may run inside a Slurm job), with
    this interpreter's directory first on PATH (torchrun.sh runs `python`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def start(*args: str, program: str = TORCHRUN) -> subprocess.Popen:
    """``program args...`` in a session of its own (see :func:`finish`)."""
    return subprocess.Popen(
        [program, *args],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(*processes: subprocess.Popen) -> str:
    """Wait for the processes to succeed; return their stdout, joined. Whatever is still
    running when one fails or times out is killed with everything it started."""
    stdout = ""
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err[-3000:]
            stdout += out
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return stdout


@pytest.mark.parametrize("gpus", ["0", "1"])
def test_one_process_on_one_node_is_a_plain_python_run(gpus):
    stdout = finish(start("--gpus", gpus, PROBE, "a b", "$HOME", "--device", "cpu"))
    assert read_reports(stdout) == [
        {"args": ["a b", "$HOME", "--device", "cpu"], "torchrun": False}
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--num-nodes", "2", "--node-rank", "2", PROBE],
            "--node-rank 2 is not below --num-nodes 2",
        ),
        (["--gpus", "two", PROBE], "--gpus expects a whole number, got 'two'"),
        (["--num-nodes", "0", PROBE], "--num-nodes must be at least 1"),
        (["--num-nodes", "2", "--rdzv-endpoint", "host0", PROBE], "expects HOST:PORT, got 'host0'"),
        (["--gpus", "2"], "expected SCRIPT"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(args, message):
    process = start(*args)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1
    assert message in stderr
    assert not read_reports(stdout)


@pytest.mark.slow
def test_several_gpus_on_one_node_run_under_torchrun():
    # The probe touches no GPU: two processes stand for two GPUs.
    found = read_reports(finish(start("--gpus", "2", "--rdzv-id", "ignored", PROBE, "x")))
    assert [r["rank"] for r in found] == [0, 1]
    assert {r["world_size"] for r in found} == {2}
    # --standalone: a rendezvous of its own on a free port, whatever --rdzv-* say.
    assert found[0]["run_id"] == found[1]["run_id"] != "ignored"


@pytest.mark.slow
def test_two_nodes_meet_at_the_rendezvous_endpoint():
    endpoint = f"127.0.0.1:{free_port()}"
    # Node 1 first: it must wait for node 0, which hosts the rendezvous.
    nodes = [
        start(
            "--num-nodes",
            "2",
            "--node-rank",
            rank,
            "--rdzv-endpoint",
            endpoint,
            "--rdzv-id",
            "pair",
            PROBE,
            "x",
        )
        for rank in ("1", "0")
    ]
    found = read_reports(finish(*nodes))
    assert [r["rank"] for r in found] == [0, 1]
    assert all(r["world_size"] == 2 and r["run_id"] == "pair" and r["args"] == ["x"] for r in found)


@pytest.mark.slow
def test_stage3_of_run_sh_on_two_nodes_started_by_hand(recipe):
    # What the README says to run on each node, node 1 first.
    common = [
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
    ]
    nodes = [
        start(*common, "--node-rank", rank, program=str(REPO / "run.sh")) for rank in ("1", "0")
    ]
    finish(*nodes)
    exp = recipe / "exp" / "tiny"
    assert (exp / "final" / "model.pt").is_file()
    assert (exp / ".stage3.done").is_file()
    train_log = (exp / "log" / "train.log").read_text()
    assert "on 2 process(es), device cpu" in train_log
    assert "the weights agree across 2 ranks" in train_log
    for rank in ("0", "1"):  # each node's runner (utils/run_local.sh) logs to a file of its own
        runner_log = recipe / "exp" / "log" / "tiny" / f"train.node{rank}.log"
        assert runner_log.read_text().rstrip().splitlines()[-1].startswith("# Ended (code 0)")


@pytest.mark.slow
def test_stage3_trains_through_a_train_cmd_of_any_name(recipe, tmp_path):
    runner = tmp_path / "queue.sh"  # a site's own runner, here one that delegates
    runner.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {tmp_path}/calls.txt\n'
        f'exec {REPO}/utils/run_local.sh "$@"\n'
    )
    runner.chmod(0o755)
    finish(
        start(
            "--dir",
            str(recipe),
            "--train-config",
            str(recipe / "tiny.yaml"),
            "--stage",
            "3",
            "--stop-stage",
            "3",
            "--force",
            "true",
            "--train-cmd",
            str(runner),
            program=str(REPO / "run.sh"),
        )
    )
    [call] = (tmp_path / "calls.txt").read_text().splitlines()
    assert call.startswith("--gpus 0 --num-nodes 1 exp/log/tiny/train.log ")
    assert (recipe / "exp" / "tiny" / ".stage3.done").is_file()
    runner_log = (recipe / "exp" / "log" / "tiny" / "train.log").read_text()
    assert "on 1 process(es), device cpu" in runner_log
    assert runner_log.rstrip().splitlines()[-1].startswith("# Ended (code 0)")
