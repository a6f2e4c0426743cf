#!/usr/bin/env python3
"""The files a config depends on, for run.sh's done markers: the YAML files it is built from
(CONFIG, then its `base:` chain), or with --teacher-marker the stage-3 marker of the system whose
trained model is its teacher (exp/<sys>/.stage3.done when teacher.path lies under exp/<sys>/).

Reads only the configs (no torch). Paths are printed one a line; teacher.path and the marker are
relative to the working directory, as in run.sh.

Inputs:  CONFIG, a system or data YAML
Outputs: stdout, the files

Usage: local/config_inputs.py conf/oskdft.yaml              # conf/oskdft.yaml, its bases
       local/config_inputs.py --teacher-marker conf/oskdft.yaml [--override teacher.path=...]
"""
import argparse

from oskdft.cli.common import make_parser
from oskdft.config import config_files, load_config


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("config", help="the YAML")
    parser.add_argument("--teacher-marker", action="store_true",
                        help="print the teacher's stage-3 marker (or nothing) instead")
    parser.add_argument("--override", nargs="*", default=[], help="dotted config overrides")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    if args.teacher_marker:
        system = load_config(args.config, args.override).teacher_system()
        files = [] if system is None else [f"exp/{system}/.stage3.done"]
    else:
        files = config_files(args.config)
    for path in files:
        print(path)


if __name__ == "__main__":
    main()
