#!/usr/bin/env python3
"""Stage 2's plan: which systems have a teacher that stage 2 caches (KD on, teacher.mode
cached). Prints their names, one per line; the others need no stage-2 job at all.

Reads only the configs (no torch), so run.sh can ask before starting any job.

Inputs:  NAME=CONFIG pairs, the system YAMLs
Outputs: stdout, the names of the systems to cache

Usage: local/cached_systems.py oskdft=conf/oskdft.yaml ft_only=conf/ft_only.yaml \\
           [--override teacher.mode=cached]
"""
import argparse

from oskdft.cli.common import make_parser
from oskdft.config import load_config


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("systems", nargs="+", metavar="NAME=CONFIG", help="system name and YAML")
    parser.add_argument("--override", nargs="*", default=[], help="dotted config overrides")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    for pair in args.systems:
        name, _, config = pair.partition("=")
        if load_config(config, args.override).caches_teacher():
            print(name)


if __name__ == "__main__":
    main()
