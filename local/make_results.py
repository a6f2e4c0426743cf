#!/usr/bin/env python3
"""Stage 5, last step: the results table over all systems, printed and written to EXP_DIR.

One row per system, trial list and back end: EER, minDCF at 0.01 and 0.001, Cllr, min Cllr, SSL
and total parameter counts and the SSL time relative to the teacher; the best EER of each trial
list in bold.

Inputs:  EXP_DIR/<system>/scores/metrics.json, EXP_DIR/<system>/final/meta.json (optional)
Outputs: EXP_DIR/results.md (also printed), EXP_DIR/results.json

Usage: local/make_results.py --systems "teacher_ft oskdft" --eval-sets "test" exp
"""
import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.scoring.report import make_results
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--systems", required=True, help="systems in table order, space-separated")
    parser.add_argument("--eval-sets", required=True,
                        help="evaluation sets whose trial lists are reported, space-separated")
    parser.add_argument("exp_dir", help="the recipe's experiment directory")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    print(make_results(exp_dir=args.exp_dir, systems=args.systems.split(),
                       eval_sets=args.eval_sets.split()), end="")


if __name__ == "__main__":
    run_script(main)
