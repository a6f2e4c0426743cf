#!/usr/bin/env python3
"""Stage 5, last step: the results table over all systems, printed and written to EXP_DIR.

Its systems: every one under EXP_DIR whose scores are current (scored since its last embeddings,
for --eval-sets), --order's first, then the others by name; a rerun of stage 5 naming fewer
systems keeps the others' rows (oskdft.scoring.report.current_systems).

One row per system, trial list and back end: EER and minDCF at 0.01 and 0.001 with 95%
intervals of a bootstrap over speakers, the EER difference from the reference system with its
paired interval (marked when significant), Cllr, min Cllr, SSL and total parameter counts and
GMAC per second of audio; the best EER of each trial list in bold. How the intervals are made:
oskdft/scoring/bootstrap.py.

Inputs:  EXP_DIR/<system>/{.stage4.done,.stage5.done} (which systems are current),
         EXP_DIR/<system>/scores/{metrics.json,<list>.<backend>.score},
         EXP_DIR/<system>/final/meta.json (optional), DATA_DIR/<set>/utt2spk
Outputs: EXP_DIR/results.md (also printed), EXP_DIR/results.json

Usage: local/make_results.py --order "teacher_ft oskdft" --eval-sets "test" --data-dir data exp
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.scoring.report import REFERENCE, RESAMPLES, current_systems, make_results
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--order",
        default="",
        help="systems listed first, in this order (run.conf's), space-separated",
    )
    parser.add_argument(
        "--eval-sets",
        required=True,
        help="evaluation sets whose trial lists are reported, space-separated, "
        "as run.conf writes them (run.sh's stage-5 hash covers the string)",
    )
    parser.add_argument(
        "--data-dir", required=True, help="the recipe's data directory (the trials' speakers)"
    )
    parser.add_argument(
        "--resamples", type=int, default=RESAMPLES, help="bootstrap resamples per trial list"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap resamples")
    parser.add_argument(
        "--reference", default=REFERENCE, help="the system whose EER the others are compared with"
    )
    parser.add_argument("exp_dir", help="the recipe's experiment directory")
    return parser


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")
    setup_logging()
    logging.info("%s", vars(args))
    systems = current_systems(args.exp_dir, args.order.split(), args.eval_sets)
    print(
        make_results(
            exp_dir=args.exp_dir,
            data_dir=args.data_dir,
            systems=systems,
            eval_sets=args.eval_sets.split(),
            resamples=args.resamples,
            seed=args.seed,
            reference=args.reference,
        ),
        end="",
    )


if __name__ == "__main__":
    run_script(main)
