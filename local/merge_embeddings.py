#!/usr/bin/env python3
"""Stage 4, after the jobs: merge each set's job tables into xvector.scp and xvector_crops.scp,
for each system given.

Checks that every job wrote exactly its share of the set's utterances and fails, naming the
incomplete jobs and what they lack, before writing anything; the merged scp files are sorted by
utterance id and point into the jobs' arks. Imports no torch.

Inputs:  DATA_DIR/manifests/<set>_cuts.jsonl.gz,
         EXP_DIR/<system>/embeddings/<set>/xvector{,_crops}.JOB.scp
Outputs: EXP_DIR/<system>/embeddings/<set>/xvector.scp, xvector_crops.scp

Usage: local/merge_embeddings.py --sets "test valid backend" --full-only-sets backend \\
           --num-jobs 4 data exp oskdft ft_only
"""

import argparse
import logging

from oskdft.cli.common import make_parser, run_script
from oskdft.embedding.merge import merge_embeddings
from oskdft.layout import system_paths
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--sets", required=True, help="sets to merge, space-separated")
    parser.add_argument(
        "--full-only-sets",
        default="",
        help="of those, the sets embedded without crops, space-separated (the back-end set)",
    )
    parser.add_argument(
        "--num-jobs", type=int, required=True, help="the number of jobs that extracted them"
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("exp_dir", help="the experiments, e.g. exp")
    parser.add_argument("systems", nargs="+", help="the systems whose embeddings to merge")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    for system in args.systems:
        merge_embeddings(
            data_dir=args.data_dir,
            embeddings_dir=system_paths(args.exp_dir, system)[1],
            sets=args.sets.split(),
            num_jobs=args.num_jobs,
            full_only_sets=args.full_only_sets.split(),
        )


if __name__ == "__main__":
    run_script(main)
