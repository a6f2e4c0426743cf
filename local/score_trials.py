#!/usr/bin/env python3
"""Stage 5 for one system: score every trial list with every back end, calibrate, measure.

Fits the back ends (mean, LDA + PLDA, AS-norm cohort) on the back-end set, scores the validation
trials to fit each back end's calibration, then scores every DATA_DIR/<set>/trials_<name> of the
evaluation sets and computes EER, minDCF at p_target 0.01 and 0.001, Cllr and min Cllr.
The back ends and their settings come from SYSTEM_DIR/config.yaml (`eval` section).

Inputs:  SYSTEM_DIR/config.yaml, SYSTEM_DIR/embeddings/<set>/xvector{,_crops}.scp,
         DATA_DIR/<set>/trials_*, DATA_DIR/<valid-set>/trials_valid, DATA_DIR/<backend-set>/utt2spk
Outputs: SYSTEM_DIR/scores/{<name>.<backend>.score,<name>.det.png,<name>.hist.png,
         metrics.json,calibration.json,<backend>.npz}, log in SYSTEM_DIR/log/score.log

Usage: local/score_trials.py --eval-sets "test" data exp/oskdft
"""

import argparse
import logging
from pathlib import Path

from oskdft.cli.common import make_parser, run_script
from oskdft.scoring.pipeline import score_system
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--eval-sets",
        required=True,
        help="evaluation sets whose trial lists are scored, space-separated",
    )
    parser.add_argument(
        "--valid-set",
        default="valid",
        help="set of held-out training speakers with trials_valid (calibration)",
    )
    parser.add_argument(
        "--backend-set",
        default="backend",
        help="training-speaker set for the mean, LDA/PLDA and AS-norm cohort",
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("system_dir", help="the system's experiment directory, exp/<system>")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(log_file=Path(args.system_dir) / "log" / "score.log")
    logging.info("%s", vars(args))
    score_system(
        data_dir=args.data_dir,
        system_dir=args.system_dir,
        eval_sets=args.eval_sets.split(),
        valid_set=args.valid_set,
        backend_set=args.backend_set,
    )


if __name__ == "__main__":
    run_script(main)
