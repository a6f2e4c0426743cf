#!/usr/bin/env python3
"""Stage 4, one job: speaker embeddings of this job's share of each set, for each system given,
with its trained model.

Each set's utterances are split over the N jobs by duration (deterministically); this job embeds
its share twice, the whole utterance and num_crops crops of crop_seconds (the model config's
`eval` section; the whole utterance alone for --full-only-sets), and writes them as Kaldi
tables. One job does its share for every system in turn, so a machine pays the start-up (torch,
transformers) once per job, not once per system. A set this job already finished with the same
model is skipped, so a rerun redoes only missing or failed work.

Inputs:  EXP_DIR/<system>/final/{config.yaml,model.pt,ssl/,meta.json},
         DATA_DIR/manifests/<set>_cuts.jsonl.gz (stage 0: evaluation sets; stage 1: valid, backend)
Outputs: EXP_DIR/<system>/embeddings/<set>/xvector.JOB.{ark,scp}, xvector_crops.JOB.{ark,scp},
         .done.JOB

Usage: local/extract_embeddings.py --sets "test valid backend" --full-only-sets backend \\
           --job 1 --num-jobs 4 data exp oskdft ft_only
"""

import argparse
import logging

from oskdft.cli.common import add_job_args, make_parser, run_script
from oskdft.embedding.extract import extract_embeddings_job
from oskdft.layout import system_paths
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--sets", required=True, help="sets to embed, space-separated")
    parser.add_argument(
        "--full-only-sets",
        default="",
        help="of those, the sets embedded without crops, space-separated (the back-end set)",
    )
    add_job_args(parser)
    parser.add_argument("--device", default="auto", help="auto (GPU if any), cpu or cuda[:i]")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="processes loading audio ahead of the model (0: none)",
    )
    parser.add_argument("data_dir", help="the recipe's data directory")
    parser.add_argument("exp_dir", help="the experiments, e.g. exp")
    parser.add_argument("systems", nargs="+", help="the systems to embed with, e.g. oskdft")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    logging.info("%s", vars(args))
    for system in args.systems:
        final_dir, embeddings_dir = system_paths(args.exp_dir, system)
        logging.info("%s: job %d of %d", system, args.job, args.num_jobs)
        extract_embeddings_job(
            final_dir=final_dir,
            data_dir=args.data_dir,
            embeddings_dir=embeddings_dir,
            sets=args.sets.split(),
            job=args.job,
            num_jobs=args.num_jobs,
            full_only_sets=args.full_only_sets.split(),
            device=args.device,
            num_workers=args.num_workers,
        )


if __name__ == "__main__":
    run_script(main)
