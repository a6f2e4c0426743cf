"""The training script of the utils/torchrun.sh tests: joins the process group that torchrun
set up (when it did) and prints one line, ``probe {json}``, about this process: its arguments,
and under torchrun its rank, the world size, the rendezvous id and every rank's Slurm node.
:func:`read_reports` reads those lines back."""

import json
import os
import sys
from typing import List

PROBE = os.path.abspath(__file__)  # this script


def main() -> None:
    report = {"args": sys.argv[1:], "torchrun": "RANK" in os.environ}
    if report["torchrun"]:
        import torch.distributed as dist  # only here: a plain run needs no torch

        dist.init_process_group("gloo")
        nodes = [None] * dist.get_world_size()
        dist.all_gather_object(nodes, os.environ.get("SLURM_NODEID"))
        report.update(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            run_id=os.environ["TORCHELASTIC_RUN_ID"],
            nodes=nodes,
        )
        dist.destroy_process_group()
    # One write: the processes share stdout, and a short write to a pipe is never interleaved.
    os.write(sys.stdout.fileno(), f"probe {json.dumps(report)}\n".encode())


def read_reports(stdout: str) -> List[dict]:
    """The reports in ``stdout`` (lines may carry srun's ``N: `` label), by rank."""
    found = [
        json.loads(line.split("probe ", 1)[1]) for line in stdout.splitlines() if "probe {" in line
    ]
    return sorted(found, key=lambda r: r.get("rank", 0))


if __name__ == "__main__":
    main()
