#!/usr/bin/env python3
"""Stage 3: train one system (OS-KDFT or a baseline) and write its trained-model directory.

One plain process on the CPU, or one process per GPU under torchrun (DDP; several nodes through
a c10d rendezvous). An interrupted run continues from its newest checkpoint; a run of another
config in EXP_DIR, or of other inputs (--inputs-hash), is refused unless --force true, which
moves it aside and starts over.

Inputs:  DATA_DIR/manifests/train_windows.jsonl.gz, train_speakers.txt (stage 1),
         DATA_DIR/valid/ (validation trials), the teacher cache (stage 2, cached teachers),
         the system and data YAML configs
Outputs: EXP_DIR/config.yaml, EXP_DIR/inputs.yaml (the --inputs-hash), EXP_DIR/checkpoints/,
         EXP_DIR/final/ (config.yaml, model.pt, ssl/, meta.json), EXP_DIR/log/train.log,
         EXP_DIR/metrics.jsonl

Usage: local/train.py --device cpu --config conf/oskdft.yaml --data-config conf/data.yaml \\
           [--override optim.epochs=2 ...] [--inputs-hash data/.stage1.done=<sha256> ...] \\
           --force false data exp/oskdft
       torchrun --nproc_per_node=8 --nnodes=1 --rdzv_backend=c10d \\
           --rdzv_endpoint=127.0.0.1:29400 local/train.py --config ... data exp/oskdft
"""

import argparse
import logging

from oskdft.cli.common import add_system_args, make_parser, run_script, str2bool
from oskdft.training.trainer import train_system
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_system_args(parser)
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto: this rank's GPU when there is one",
    )
    parser.add_argument(
        "--force",
        type=str2bool,
        default=False,
        help="start over when EXP_DIR holds a run of another config or other "
        "inputs (the old run is moved to EXP_DIR.bak-<time>)",
    )
    parser.add_argument(
        "--inputs-hash",
        nargs="*",
        metavar="NAME=HASH",
        help="hashes of the run's inputs besides the config (run.sh: the "
        "markers of stage 1 and of the teacher's training); a run of other "
        "inputs is refused like one of another config",
    )
    parser.add_argument(
        "--teacher-cache", default="exp/teacher_cache", help="stage 2's teacher cache root"
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("exp_dir", help="the system's experiment directory")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    train_system(
        config=args.config,
        data_config=args.data_config,
        data_dir=args.data_dir,
        exp_dir=args.exp_dir,
        overrides=args.override,
        device=args.device,
        force=args.force,
        teacher_cache=args.teacher_cache,
        input_hashes=None
        if args.inputs_hash is None
        else dict(pair.split("=", 1) for pair in args.inputs_hash),
    )


if __name__ == "__main__":
    run_script(main)
