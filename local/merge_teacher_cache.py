#!/usr/bin/env python3
"""Stage 2, after the jobs: verify each system's teacher cache and write its merged manifest.

Checks that every window of the manifest is cached exactly once, in order, with an array of
the expected shape, and that no fp16 shard file is cut short, then writes the merged cuts and
meta.yaml. The arrays are not read back: each job checked its values were finite before
storing them. Fails, writing nothing, when a shard is missing or wrong. Systems without a
cache (no KD, online teacher) are skipped with a log line.

Inputs:  the systems' YAMLs, the data config, DATA_DIR/manifests/train_windows.jsonl.gz,
         EXP_CACHE/<key>/shards/
Outputs: EXP_CACHE/<key>/{cuts.jsonl.gz,meta.yaml}

Usage: local/merge_teacher_cache.py --config conf/oskdft.yaml conf/kd_then_ft.yaml \\
           --data-config conf/data.yaml \\
           --num-jobs 4 data exp/teacher_cache
"""

import argparse
import logging

from oskdft.cache import merge_teacher_cache
from oskdft.cli.common import add_system_args, make_parser, run_script
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_system_args(parser, several=True)
    parser.add_argument(
        "--num-jobs", type=int, required=True, help="the number of jobs that wrote the shards"
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("cache_root", help="where caches live, e.g. exp/teacher_cache")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    for config in args.config:  # a cache two systems share is written once
        merge_teacher_cache(
            config=config,
            data_config=args.data_config,
            data_dir=args.data_dir,
            cache_root=args.cache_root,
            num_jobs=args.num_jobs,
            overrides=args.override,
        )


if __name__ == "__main__":
    run_script(main)
