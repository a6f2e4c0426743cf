#!/usr/bin/env python3
"""Stage 0 (second half): validate the Kaldi data dirs and write their lhotse manifests.

Checks every set (sorted unique keys, readable non-empty audio, trials naming known
utterances, training speakers with >= --min-utts-per-speaker utterances, evaluation utterances
of >= --min-eval-seconds), then writes
DATA_DIR/manifests/<set>_{recordings,supervisions,cuts}.jsonl.gz and logs a table of
speakers, utterances and hours per set.

Inputs:  DATA_DIR/<set>/{wav.scp,utt2spk,spk2utt,segments,trials_*}
Outputs: DATA_DIR/manifests/<set>_{recordings,supervisions,cuts}.jsonl.gz

Usage: local/prepare_manifests.py --train-set train --eval-sets "test" \\
           --aug-sets "musan_noise musan_music musan_speech rirs" data
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.data.kaldi_dir import MIN_EVAL_SECONDS
from oskdft.data.manifests import prepare_manifests
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--train-set", required=True, help="the training set's data dir name")
    parser.add_argument("--eval-sets", default="", help="evaluation sets, space-separated")
    parser.add_argument("--aug-sets", default="", help="augmentation sets, space-separated")
    parser.add_argument(
        "--min-utts-per-speaker",
        type=int,
        default=2,
        help="fewest utterances a training speaker may have",
    )
    parser.add_argument(
        "--min-eval-seconds",
        type=float,
        default=MIN_EVAL_SECONDS,
        help="shortest evaluation utterance; a shorter one is an error naming "
        "its line (it has no embedding worth scoring)",
    )
    parser.add_argument("--num-threads", type=int, default=8, help="threads reading audio headers")
    parser.add_argument("data_dir", help="the recipe's data directory")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    prepare_manifests(
        data_dir=args.data_dir,
        train_set=args.train_set,
        eval_sets=args.eval_sets.split(),
        aug_sets=args.aug_sets.split(),
        min_utts_per_speaker=args.min_utts_per_speaker,
        num_threads=args.num_threads,
        min_eval_seconds=args.min_eval_seconds,
    )


if __name__ == "__main__":
    run_script(main)
