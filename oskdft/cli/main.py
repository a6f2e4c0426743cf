"""The ``oskdft`` console command: one subcommand per task.

    oskdft info CONFIG [--override key=value ...] [--num-speakers N] [--dir DIR]

``info CONFIG`` prints the parameter count of each component of the system a YAML config
defines (SSL encoder, adapters, ECAPA back end, AAM head) next to the teacher with the same back
end, built on the meta device (no weights are loaded; only the teacher's config.json is read).

A subcommand is a function ``add_<name>(subparsers)`` that adds its parser and sets
``func`` to the function that runs it; :data:`SUBCOMMANDS` lists them in help order.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, List, Optional

from oskdft.config import load_config
from oskdft.losses.aam import AAMSoftmax
from oskdft.models.describe import describe_system, format_description
from oskdft.models.teacher import load_teacher_config
from oskdft.utils.errors import InputError
from oskdft.utils.logging import setup_logging

# ssl.source values that build the system from the teacher's architecture.
_NEEDS_TEACHER = ("student", "teacher")


def add_info(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="parameter counts of a system config",
        description="Parameter counts per component of the system CONFIG defines, next to the "
        "teacher with the same back end.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("config", help="a system YAML config, e.g. egs/mini/conf/oskdft.yaml")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides, e.g. ssl.num_layers=2")
    parser.add_argument("--num-speakers", type=int, default=None,
                        help="training speakers, to count the AAM-softmax head")
    parser.add_argument("--dir", default=".",
                        help="the recipe's working directory, against which a relative "
                        "teacher.path is resolved")
    parser.set_defaults(func=run_info)


def run_info(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.override)
    teacher_config = None
    if cfg.ssl.source in _NEEDS_TEACHER:
        if cfg.teacher.path is None:
            raise InputError(args.config, f"ssl.source={cfg.ssl.source} needs teacher.path")
        teacher_config = load_teacher_config(_resolve(cfg.teacher.path, args.dir))
    aam_head = None
    if args.num_speakers is not None:
        aam_head = AAMSoftmax(cfg.backend.embed_dim, args.num_speakers)
    description = describe_system(cfg, teacher_config, aam_head)
    print(format_description(Path(args.config).stem, description))


SUBCOMMANDS: List[Callable] = [add_info]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oskdft", description="OS-KDFT speaker-verification toolkit: one subcommand per task."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.debug("%s", vars(args))
    try:
        args.func(args)
    except InputError as e:
        logging.error("%s", e)
        return 1
    return 0


def _resolve(path: str, work_dir: str) -> str:
    """A relative teacher path that exists under ``work_dir`` is taken from there; anything
    else (a hub name) is passed on unchanged."""
    candidate = Path(work_dir) / path
    return str(candidate) if not Path(path).is_absolute() and candidate.exists() else path


if __name__ == "__main__":
    sys.exit(main())
