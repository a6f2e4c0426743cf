#!/usr/bin/env python3
"""Stage 0 of egs/mini (and egs/mini_pretrain): synthesise a multi-speaker corpus and its Kaldi
data dirs, and put the pre-trained teacher where the systems' configs name it.

Nothing is read or downloaded: voices, sessions (microphone, room, noise, level), MUSAN-like
noise, music and babble, and room impulse responses are all made with numpy from --seed, so
the same seed gives the same bytes. About 30 s of CPU; egs/mini/README.md describes the corpus.
--teacher copies a committed Hugging Face model (egs/mini/teacher, made by egs/mini_pretrain)
to DATA_DIR/teacher after checking its sha256, as a real recipe fetches its SSL model.

Inputs:  --teacher DIR (config.json, model.safetensors), optional
Outputs: CORPUS_DIR/{wav/<spk>/<session>/<nnnnn>.wav, musan/{noise,music,speech}/, rirs/},
         DATA_DIR/{train,test}/ (wav.scp, utt2spk, spk2utt; test: trials_mini),
         DATA_DIR/{musan_noise,musan_music,musan_speech,rirs}/wav.scp, DATA_DIR/teacher/

Usage: egs/mini/prepare.py [--seed 0] [--corpus-dir DIR] [--teacher DIR --teacher-sha256 HEX] data
"""

import argparse
import hashlib
import logging
import os
import shutil
from pathlib import Path

from oskdft.cli.common import make_parser, run_script
from oskdft.recipes.synthetic import MiniCorpusSpec, prepare_mini_corpus
from oskdft.utils.errors import InputError
from oskdft.utils.io import atomic_dir
from oskdft.utils.logging import setup_logging

TEACHER_FILES = ("config.json", "model.safetensors")


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    spec = MiniCorpusSpec()
    parser.add_argument("--seed", type=int, default=0, help="the corpus is a function of it")
    parser.add_argument(
        "--first-speaker",
        type=int,
        default=spec.first_speaker,
        help="index of the first training speaker (another index: other voices)",
    )
    parser.add_argument("--train-speakers", type=int, default=spec.train_speakers)
    parser.add_argument("--test-speakers", type=int, default=spec.test_speakers)
    parser.add_argument(
        "--corpus-dir", default=None, help="where the audio goes (default: DATA_DIR/mini_corpus)"
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes synthesising speech (default: this machine's cores; same corpus)",
    )
    parser.add_argument("--teacher", default=None, help="a Hugging Face model dir to install")
    parser.add_argument("--teacher-sha256", default=None, help="the sha256 of its safetensors")
    parser.add_argument("data_dir", help="where the data dirs are written")
    return parser


def install_teacher(source: Path, sha256: str, data_dir: Path) -> None:
    """Copy the teacher to DATA_DIR/teacher if its weights are the ones run.conf names."""
    weights = source / TEACHER_FILES[1]
    if not weights.is_file():
        raise InputError(
            weights,
            "the pre-trained teacher is missing",
            hint="egs/mini_pretrain/README.md makes it",
        )
    found = hashlib.sha256(weights.read_bytes()).hexdigest()
    if found != sha256:
        raise InputError(
            weights,
            f"sha256 {found}, but run.conf names {sha256}",
            hint="a new teacher needs its hash in run.conf (--teacher-sha256)",
        )
    with atomic_dir(data_dir / "teacher") as tmp:
        for name in TEACHER_FILES:
            shutil.copyfile(source / name, tmp / name)


def main(argv=None) -> None:
    parser = get_parser()
    args = parser.parse_args(argv)
    if bool(args.teacher) != bool(args.teacher_sha256):
        parser.error("--teacher and --teacher-sha256 go together")
    setup_logging()
    logging.info("%s", vars(args))
    spec = MiniCorpusSpec(
        first_speaker=args.first_speaker,
        train_speakers=args.train_speakers,
        test_speakers=args.test_speakers,
    )
    prepare_mini_corpus(
        args.data_dir,
        corpus_dir=args.corpus_dir,
        seed=args.seed,
        spec=spec,
        num_workers=args.num_workers,
    )
    if args.teacher:
        install_teacher(Path(args.teacher), args.teacher_sha256, Path(args.data_dir))


if __name__ == "__main__":
    run_script(main)
