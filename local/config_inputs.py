#!/usr/bin/env python3
"""What run.sh's done markers and stage 2's plan need of the configs, in one pass (no torch).

Prints one line for the data config, then one per system:

    data <digest>
    system <name> <digest> <cached|online|none> <teacher marker or ->

The digest is of the config as loaded (its YAML, its `base:` chain, the overrides): a comment,
key order, or a key restated at its value does not change it, so such an edit reruns nothing.
The third field says whether stage 2 caches the system's teacher (cached), the teacher runs in
each training step (online), or there is no KD (none). The marker is the stage-3 marker of the
system whose trained model is the teacher (exp/<sys>/.stage3.done when teacher.path lies under
exp/<sys>/), relative to the working directory as in run.sh.

A system that needs a teacher (its student copies it, it fine-tunes it or distils it) and names
none is an error naming its YAML, so run.sh stops before its first stage.

Inputs:  the data YAML, NAME=CONFIG pairs (the system YAMLs)
Outputs: stdout, the lines above

Usage: local/config_inputs.py --data-config conf/data.yaml oskdft=conf/oskdft.yaml \\
           ft_only=conf/ft_only.yaml [--override teacher.mode=cached]
"""

import argparse

from oskdft.cli.common import make_parser, run_script
from oskdft.config import NO_KD, config_digest, load_config, load_data_config


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--data-config", required=True, help="the recipe's data YAML")
    parser.add_argument("systems", nargs="*", metavar="NAME=CONFIG", help="system name and YAML")
    parser.add_argument("--override", nargs="*", default=[], help="dotted config overrides")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    print("data", config_digest(load_data_config(args.data_config)))
    for pair in args.systems:
        name, _, path = pair.partition("=")
        cfg = load_config(path, args.override)
        cfg.check_teacher(path)  # before any stage runs, not hours later in stage 3
        teacher = "none" if cfg.kd.loss == NO_KD else cfg.teacher.mode
        system = cfg.teacher_system()
        marker = "-" if system is None else f"exp/{system}/.stage3.done"
        print("system", name, config_digest(cfg), teacher, marker)


if __name__ == "__main__":
    run_script(main)
