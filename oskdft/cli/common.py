"""Argument plumbing shared by the stage scripts in ``local/`` and the ``oskdft`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from oskdft.utils.errors import InputError


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of a script's docstring, showing defaults."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def str2bool(text: str) -> bool:
    """``true``/``false``, as run.sh writes booleans.

    >>> str2bool("true"), str2bool("false")
    (True, False)
    """
    if text not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text == "true"


def add_system_args(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """The system's YAML (``several``: one or more systems' YAMLs), the recipe's data YAML and
    dotted overrides (run.sh's --override)."""
    if several:
        parser.add_argument("--config", required=True, nargs="+", help="the systems' YAMLs")
    else:
        parser.add_argument("--config", required=True, help="the system's YAML")
    parser.add_argument("--data-config", required=True, help="the recipe's data YAML")
    parser.add_argument(
        "--override", nargs="*", default=[], help="dotted config overrides, e.g. optim.epochs=2"
    )


def add_job_args(parser: argparse.ArgumentParser) -> None:
    """This job's number and the job count, as the job runner's JOB=1:N gives them."""
    parser.add_argument("--job", type=int, required=True, help="this job's number, 1..N")
    parser.add_argument("--num-jobs", type=int, required=True, help="N, the number of jobs")


def run_script(main: Callable[[], None]) -> None:
    """Run a stage script's ``main``. Bad input ends it with the error's one line (file, line,
    what to do) and exit status 1 instead of a traceback; any other exception is a bug and
    keeps its traceback."""
    try:
        main()
    except InputError as e:
        sys.exit(f"ERROR: {e}")
