"""torchrun on the CPU (gloo): two processes on one node, and two single-process "nodes" that
meet through a c10d rendezvous on 127.0.0.1. Only rank 0 writes; the trainer checks after
every epoch that the replicas' weights agree bit for bit (and fails if not)."""

import socket
import subprocess
import sys
from pathlib import Path

from tests.training.tiny_recipe import tiny_system, write_system

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(recipe, name, port, nnodes=1, node_rank=0, nproc=2):
    config = write_system(
        recipe,
        name,
        tiny_system(optim={"epochs": 1, "batch_size": 4}, train={"max_steps_per_epoch": 2}),
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint=127.0.0.1:{port}",
        f"--rdzv_id=oskdft-{name}",
        str(REPO / "local" / "train.py"),
        "--device",
        "cpu",
        "--config",
        str(config),
        "--data-config",
        str(recipe / "data.yaml"),
        str(recipe / "data"),
        str(recipe / "exp" / name),
    ]
    return subprocess.Popen(
        command, cwd=recipe, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process):
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output[-3000:]


def check_run(exp):
    assert (exp / "checkpoints" / "epoch-1.pt").is_file()
    assert (exp / "final" / "model.pt").is_file()
    log = (exp / "log" / "train.log").read_text()
    assert "on 2 process(es)" in log
    assert "the weights agree across 2 ranks" in log


def test_two_processes_on_one_node(recipe):
    finish(torchrun(recipe, "ddp", free_port()))
    check_run(recipe / "exp" / "ddp")


def test_two_nodes_through_a_c10d_rendezvous(recipe):
    port = free_port()
    nodes = [
        torchrun(recipe, "two_nodes", port, nnodes=2, node_rank=rank, nproc=1) for rank in (0, 1)
    ]
    for node in nodes:
        finish(node)
    check_run(recipe / "exp" / "two_nodes")
