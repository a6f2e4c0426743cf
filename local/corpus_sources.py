#!/usr/bin/env python3
"""The library files a recipe's prepare.py runs to write the corpus, one path a line: stage 0's
done marker hashes them with prepare.py, so an edit of the code that writes the corpus reruns
stage 0.

Every oskdft module prepare.py imports counts, directly or through another, except those of
oskdft.cli and oskdft.utils (argument parsing, logging, errors, atomic writes): they do not
change what is written, and an edit of them should not rerun every stage of every recipe.

Inputs:  PREPARE_PY (egs/<egs>/prepare.py), the oskdft package's source files
Outputs: stdout, the paths

Usage: local/corpus_sources.py --package-dir oskdft egs/mini/prepare.py
"""

import argparse

from oskdft.cli.common import make_parser, run_script
from oskdft.utils.sources import PACKAGE_DIR, imported_sources

NOT_CORPUS_CODE = ("oskdft.cli", "oskdft.utils")


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--package-dir",
        default=str(PACKAGE_DIR),
        help="the oskdft directory whose files are listed (run.sh: its own)",
    )
    parser.add_argument("prepare_py", help="the recipe's prepare.py")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    for path in imported_sources(args.prepare_py, NOT_CORPUS_CODE, args.package_dir):
        print(path)


if __name__ == "__main__":
    run_script(main)
