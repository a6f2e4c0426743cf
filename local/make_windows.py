#!/usr/bin/env python3
"""Stage 1: training windows, the held-out validation split, the back-end subset, aug sets.

Cuts every utterance of the training speakers into fixed-length windows (utterances shorter
than one window are skipped and counted), holds some speakers out for validation with a
balanced trial list, picks the back-end subset, and gathers the augmentation sources.

Inputs:  DATA_DIR/manifests/<train-set>_cuts.jsonl.gz, DATA_DIR/<train-set>/,
         DATA_DIR/manifests/<aug-set>_cuts.jsonl.gz, the data config (window and split sizes)
Outputs: DATA_DIR/manifests/{train_windows,valid_cuts,backend_cuts}.jsonl.gz,
         DATA_DIR/manifests/train_speakers.txt, train_speaker_counts.txt,
         DATA_DIR/manifests/aug_{noise,music,speech,rir}_cuts.jsonl.gz,
         DATA_DIR/valid/ (with trials_valid), DATA_DIR/backend/

Usage: local/make_windows.py --data-config conf/data.yaml --train-set train \\
           --aug-sets "musan_noise musan_music musan_speech rirs" data
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.data.windows import make_windows
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--data-config", required=True, help="the recipe's data YAML")
    parser.add_argument("--train-set", required=True, help="the training set's data dir name")
    parser.add_argument(
        "--aug-sets",
        default="",
        help="augmentation sets, space-separated; each name contains noise, music, speech or rir",
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    make_windows(
        data_dir=args.data_dir,
        data_config=args.data_config,
        train_set=args.train_set,
        aug_sets=args.aug_sets.split(),
    )


if __name__ == "__main__":
    run_script(main)
