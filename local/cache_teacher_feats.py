#!/usr/bin/env python3
"""Stage 2, one job: run the frozen teacher over the clean training windows and cache the
hidden states the system's KD loss reads, for each system given (a cache that several systems
share, the same teacher and layers, is written once).

Writes this job's shards of EXP_CACHE/<key>/ (shard s belongs to job s % N + 1), skipping
shards an earlier run finished; logs the estimated disk size before writing. A system without
KD, or with teacher.mode online, needs no cache: the script says so and exits 0.

Inputs:  the systems' YAMLs (teacher.path, teacher.mode, teacher.cache_storage, kd), the data
         config, DATA_DIR/manifests/train_windows.jsonl.gz, the teacher checkpoint
Outputs: EXP_CACHE/<key>/shards/<s>.{jsonl.gz,f16|lca}

Usage: local/cache_teacher_feats.py --config conf/oskdft.yaml conf/kd_then_ft.yaml \\
           --data-config conf/data.yaml \\
           --job 1 --num-jobs 4 data exp/teacher_cache
"""

import argparse
import logging

from oskdft.cache import cache_teacher_job
from oskdft.cli.common import add_job_args, add_system_args, make_parser, run_script
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    add_system_args(parser, several=True)
    add_job_args(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="windows per teacher call")
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda[:i]")
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("cache_root", help="where caches live, e.g. exp/teacher_cache")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    for config in args.config:  # a cache two systems share is written once
        cache_teacher_job(
            config=config,
            data_config=args.data_config,
            data_dir=args.data_dir,
            cache_root=args.cache_root,
            job=args.job,
            num_jobs=args.num_jobs,
            overrides=args.override,
            batch_size=args.batch_size,
            device=args.device,
        )


if __name__ == "__main__":
    run_script(main)
