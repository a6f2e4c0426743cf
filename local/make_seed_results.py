#!/usr/bin/env python3
"""Multi-seed runs (run.sh --seeds), last step: the table of every metric over seeds.

Per trial list, system and back end: the mean and sample standard deviation over the seeds of
EER and minDCF, every seed's EER, the EER difference from the reference system and in how many
seeds it was significant.

Inputs:  EXP_DIR/seed<k>/exp/results.json for each seed k (each seed's stage 5)
Outputs: EXP_DIR/results_seeds.md (also printed), EXP_DIR/results_seeds.json

Usage: local/make_seed_results.py --seeds "1 2 3" exp
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.scoring.report import make_seed_results
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--seeds", required=True, help="the seeds, space-separated")
    parser.add_argument("exp_dir", help="the experiment directory holding seed<k>/")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    seeds = [int(seed) for seed in args.seeds.split()]
    print(make_seed_results(exp_dir=args.exp_dir, seeds=seeds), end="")


if __name__ == "__main__":
    run_script(main)
