#!/usr/bin/env python3
"""Stage 0 of a recipe ported from existing Kaldi data dirs: import them, plus MUSAN and RIRs.

Each Kaldi dir needs wav.scp (paths or piped commands) and utt2spk, optionally segments; the
trial lists may be Kaldi-style '<utt1> <utt2> target|nontarget' or VoxCeleb-style
'1 <spk>/<video>/<n>.wav <spk>/<video>/<n>.wav'. The copies are sorted; spk2utt is regenerated.

Inputs:  --train-dir DIR, --eval-dir DIR, --trials NAME=FILE (repeatable), optional
         --musan ROOT, --rirs ROOT
Outputs: DATA_DIR/train/, DATA_DIR/test/ (with trials_NAME), DATA_DIR/{musan_*,rirs}/

Usage: egs/<name>/prepare.py --train-dir /kaldi/data/train --eval-dir /kaldi/data/test \\
           --trials test=/kaldi/data/test/trials --musan /data/musan --rirs /data/RIRS_NOISES data
"""

import argparse
import logging
from pathlib import Path
from typing import Tuple

from oskdft.cli.common import make_parser, run_script
from oskdft.data.kaldi_dir import import_data_dir
from oskdft.recipes.musan import prepare_musan, prepare_rirs
from oskdft.utils.logging import setup_logging


def name_and_path(text: str) -> Tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, path


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--train-dir", required=True, help="Kaldi data dir of the training set")
    parser.add_argument("--eval-dir", required=True, help="Kaldi data dir of the evaluation set")
    parser.add_argument(
        "--trials",
        type=name_and_path,
        action="append",
        required=True,
        help="NAME=FILE: a trial list of the evaluation set (repeatable)",
    )
    parser.add_argument("--musan", default=None, help="MUSAN root (music/ noise/ speech/)")
    parser.add_argument("--rirs", default=None, help="RIRS_NOISES root (simulated_rirs/)")
    parser.add_argument("data_dir", help="where the data dirs are written")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    data = Path(args.data_dir)
    import_data_dir(args.train_dir, data / "train")
    import_data_dir(args.eval_dir, data / "test", trials=dict(args.trials))
    if args.musan:
        prepare_musan(args.musan, data)
    if args.rirs:
        prepare_rirs(args.rirs, data)


if __name__ == "__main__":
    run_script(main)
