#!/usr/bin/env python3
"""Stage 5's input hash of one system, which run.sh's stage-5 marker records and
local/make_results.py checks to pick the table's systems: one rule for both
(oskdft.scoring.report.scores_hash). A system without its stage-4 marker is an error naming it.

Inputs:  SYSTEM_DIR/.stage4.done, --eval-sets as run.conf writes it
Outputs: stdout, the sha256

Usage: local/scores_hash.py --eval-sets "test" exp/oskdft
"""

import argparse

from oskdft.cli.common import make_parser, run_script
from oskdft.scoring.report import scores_hash


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--eval-sets",
        required=True,
        help="the evaluation sets, space-separated, as run.conf writes them (hashed as written)",
    )
    parser.add_argument("system_dir", help="the system's directory, exp/<system>")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    print(scores_hash(args.system_dir, args.eval_sets))


if __name__ == "__main__":
    run_script(main)
