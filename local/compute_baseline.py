#!/usr/bin/env python3
"""Print the EER of the trivial baseline (mean MFCC or log-mel per utterance, cosine) on
every trials_* list of a Kaldi data dir: how hard the trials are without a trained model.

Inputs:  DATA_DIR/{wav.scp,utt2spk,trials_*}
Outputs: one line per trial list and feature on stdout, e.g. "trials_mini mfcc EER 35.12%"

Usage: local/compute_baseline.py [--features "mfcc logmel"] data/test
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.recipes.baseline import FEATURES, baseline_eers
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--features",
        default="mfcc logmel",
        help="frame features averaged per utterance, space-separated; "
        f"any of: {' '.join(FEATURES.names())}",
    )
    parser.add_argument("data_dir", help="a Kaldi data dir with trials_* lists")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    for name, eers in baseline_eers(args.data_dir, args.features.split()).items():
        for feature, eer in eers.items():
            print(f"trials_{name} {feature} EER {100 * eer:.2f}%")


if __name__ == "__main__":
    run_script(main)
