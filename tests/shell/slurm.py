"""A throw-away Slurm cluster on localhost for the shell tests (tests/shell/slurm_cluster.sh),
and the skip marker for machines without Debian's slurm-wlm and munge packages."""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

HERE = Path(__file__).resolve().parent
PROGRAMS = ("sbatch", "srun", "squeue", "scontrol", "slurmctld", "slurmd", "munged")

needs_slurm = pytest.mark.skipif(
    not all(shutil.which(p) or Path("/usr/sbin", p).exists() for p in PROGRAMS),
    reason="needs slurm-wlm and munge (apt-get install slurm-wlm munge)",
)


def free_ports(count: int) -> List[int]:
    """``count`` distinct ports that are free now (all held open while they are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    return free_ports(1)[0]


def resolves(host: str) -> bool:
    try:
        socket.gethostbyname(host)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def slurm_cluster(num_nodes: int = 1) -> Iterator[Dict[str, str]]:
    """Start a cluster of 1 or 2 nodes (both this machine) and yield the environment of its
    clients; stop it and remove its files on exit. A 2-node cluster names its nodes after this
    host and ``localhost``: where the host name does not resolve, the test is skipped."""
    assert num_nodes in (1, 2)
    if num_nodes == 2 and not resolves(socket.gethostname().split(".")[0]):
        pytest.skip("this host's name does not resolve: a 2-node cluster's hosts must")
    # A short path: munged's socket lives there, and socket paths are limited to 107 bytes.
    cluster = tempfile.mkdtemp(prefix="oskdft-slurm-")
    env = {
        **os.environ,
        "PATH": f"{os.environ['PATH']}:/usr/sbin",
        "SLURM_CONF": f"{cluster}/slurm.conf",
    }
    script = str(HERE / "slurm_cluster.sh")
    ports = [str(port) for port in free_ports(1 + num_nodes)]
    started = subprocess.run(
        [script, "start", cluster, *ports], env=env, capture_output=True, text=True, timeout=60
    )
    try:
        assert started.returncode == 0, started.stderr + "".join(
            f"\n--- {p}\n{p.read_text()[-2000:]}" for p in Path(cluster).glob("*.log")
        )
        yield env
    finally:
        subprocess.run([script, "stop", cluster], env=env, timeout=60)
        shutil.rmtree(cluster, ignore_errors=True)
