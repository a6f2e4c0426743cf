#!/usr/bin/env python3
"""Stage 0 of egs/mini: synthesise a small multi-speaker corpus and its Kaldi data dirs.

Nothing is read or downloaded: voices, sessions (microphone, room, noise, level), MUSAN-like
noise, music and babble, and room impulse responses are all made with numpy from --seed, so
the same seed gives the same bytes. About 20 s of CPU; egs/mini/README.md describes the corpus.

Inputs:  none
Outputs: CORPUS_DIR/{wav/<spk>/<session>/<nnnnn>.wav, musan/{noise,music,speech}/, rirs/},
         DATA_DIR/{train,test}/ (wav.scp, utt2spk, spk2utt; test: trials_mini),
         DATA_DIR/{musan_noise,musan_music,musan_speech,rirs}/wav.scp

Usage: egs/mini/prepare.py [--seed 0] [--corpus-dir DIR] data
"""
import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.data.synthetic import prepare_mini_corpus
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0, help="the corpus is a function of it")
    parser.add_argument("--corpus-dir", default=None,
                        help="where the audio goes (default: DATA_DIR/mini_corpus)")
    parser.add_argument("data_dir", help="where the data dirs are written")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    prepare_mini_corpus(args.data_dir, corpus_dir=args.corpus_dir, seed=args.seed)


if __name__ == "__main__":
    run_script(main)
