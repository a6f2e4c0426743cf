"""The ``oskdft`` console command: one subcommand per task.

    oskdft info CONFIG [--override key=value ...] [--num-speakers N] [--dir DIR]
    oskdft info MODEL
    oskdft verify MODEL a.wav b.wav [--operating-point eer|p_target=0.01] [--backend NAME]
    oskdft embed MODEL --wav-scp wav.scp --out DIR [--batch-seconds S] [--device cuda]
                 [--skip-bad]

``info CONFIG`` prints the parameter count of each component of the system a YAML config
defines (SSL encoder, adapters, ECAPA back end, AAM head) and its compute per second of audio
(:mod:`oskdft.models.describe`) next to the teacher with the same back end, built on the meta
device (no weights are loaded; only the teacher's config.json is read), then the learning
rate of each parameter group in epochs 1, 9, 10, 50 and the last. ``info MODEL``
describes a trained or exported model: parameters, compute, teacher, training config,
calibration and the results it scored.

MODEL is ``exp/<system>/final/`` or an exported ONNX file (stage 6); with an ONNX file, verify,
embed and info never import torch (see :mod:`oskdft.inference.deploy`), which is why the
torch-based modules below are imported inside the functions that need them.

A subcommand is a function ``add_<name>(subparsers)`` that adds its parser and sets
``func`` to the function that runs it; :data:`SUBCOMMANDS` lists them in help order.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, List, Optional

from oskdft.cli.formatting import format_model_info
from oskdft.config import load_config
from oskdft.inference.deploy import (
    describe_model,
    embed_wav_scp,
    load_deployment,
    load_scorer,
    verify_pair,
)
from oskdft.utils.errors import InputError
from oskdft.utils.logging import setup_logging

# ssl.source values that build the system from the teacher's architecture.
_NEEDS_TEACHER = ("student", "teacher")
_CONFIG_SUFFIXES = (".yaml", ".yml")
_MODEL_HELP = (
    "a trained model, exp/<system>/final/, or an exported ONNX file, "
    "exp/<system>/export/model.onnx (no torch needed)"
)
_AUDIO_HELP = (
    "an audio file (any sample rate and channel count: the first channel is "
    "used, resampled to 16 kHz) or a piped command ending in '|'"
)


def _add_subcommand(
    subparsers, name: str, func: Callable, help: str, description: str, model: bool = False
) -> argparse.ArgumentParser:
    """A subcommand's parser, showing defaults, that runs ``func``; with ``model``, its first
    argument is a MODEL."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(func=func)
    if model:
        parser.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    return parser


def add_info(subparsers) -> None:
    parser = _add_subcommand(
        subparsers,
        "info",
        run_info,
        help="parameter counts and compute of a system config, or what a trained model is",
        description="With a YAML config: parameter counts per component of the system it "
        "defines and its multiply-accumulates per second of audio, next to the teacher with "
        "the same back end, and its learning-rate schedule. With a MODEL (a final/ directory "
        "or an exported .onnx): its parameters, compute, teacher, training config, "
        "calibration and results.",
    )
    parser.add_argument(
        "config",
        metavar="CONFIG_OR_MODEL",
        help="a system YAML config, e.g. egs/mini/conf/oskdft.yaml, or " + _MODEL_HELP,
    )
    parser.add_argument(
        "--override",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config only: dotted config overrides, e.g. ssl.num_layers=2",
    )
    parser.add_argument(
        "--num-speakers",
        type=int,
        default=None,
        help="config only: training speakers, to count the AAM-softmax head",
    )
    parser.add_argument(
        "--dir",
        default=".",
        help="config only: the recipe's working directory, against which a "
        "relative teacher.path is resolved",
    )


def run_info(args: argparse.Namespace) -> None:
    if Path(args.config).suffix in _CONFIG_SUFFIXES:
        print(_config_info(args))
    else:
        print(format_model_info(describe_model(args.config)))


def _config_info(args: argparse.Namespace) -> str:
    from oskdft.losses.aam import AAMSoftmax
    from oskdft.models.describe import describe_system, format_description
    from oskdft.models.teacher import load_teacher_config
    from oskdft.training.schedules import format_schedule, trained_groups

    cfg = load_config(args.config, args.override)
    schedule = format_schedule(cfg.optim, groups=trained_groups(cfg))
    teacher_config = None
    if cfg.ssl.source in _NEEDS_TEACHER:
        cfg.check_teacher(args.config)
        try:
            teacher_config = load_teacher_config(_resolve(cfg.teacher.path, args.dir))
        except InputError as error:
            # The schedule needs no model: show it, then say why the counts are missing.
            print(schedule)
            raise error
    aam_head = None
    if args.num_speakers is not None:
        aam_head = AAMSoftmax(cfg.backend.embed_dim, args.num_speakers)
    description = describe_system(cfg, teacher_config, aam_head)
    return format_description(Path(args.config).stem, description) + "\n\n" + schedule


def add_verify(subparsers) -> None:
    parser = _add_subcommand(
        subparsers,
        "verify",
        run_verify,
        help="whether two utterances share a speaker: score, calibrated LLR, decision",
        description="Embed two utterances, score them with the back end stage 5 chose for "
        "deployment, calibrate the score to a log-likelihood ratio (fitted on the validation "
        "trials) and decide at the saved threshold: same speaker when LLR >= threshold.",
        model=True,
    )
    parser.add_argument("enrol", help="the first utterance: " + _AUDIO_HELP)
    parser.add_argument("test", help="the second utterance, the same way")
    parser.add_argument(
        "--operating-point",
        default="eer",
        help="the threshold to decide with: eer (the equal-error point of the "
        "validation trials) or p_target=0.01 (the Bayes threshold for a 1%% "
        "target prior)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        help="score with this back end of stage 5 (cosine, cosine_mean, plda, "
        "asnorm, fused) instead of the deployment back end it chose",
    )


def run_verify(args: argparse.Namespace) -> None:
    deployment = load_deployment(args.model)
    scorer = load_scorer(deployment, args.backend)
    verdict = verify_pair(deployment, scorer, args.enrol, args.test, args.operating_point)
    print(f"score      {verdict.score:.6f} ({verdict.backend})")
    print(f"llr        {verdict.llr:.4f}")
    print(f"threshold  {verdict.threshold:.4f} ({verdict.operating_point})")
    print(f"decision   {'same speaker' if verdict.same_speaker else 'different speakers'}")
    for entry in verdict.silent:
        logging.warning("%s has no signal energy: the score and decision mean nothing", entry)


def add_embed(subparsers) -> None:
    parser = _add_subcommand(
        subparsers,
        "embed",
        run_embed,
        help="embeddings of every utterance of a wav.scp, as Kaldi ark/scp",
        description="Embed every utterance of a Kaldi wav.scp (whole recordings) into "
        "OUT/xvector.scp with its arks, batched by length. Resumable: a rerun into the same "
        "OUT keeps the finished chunks.",
        model=True,
    )
    parser.add_argument(
        "--wav-scp", required=True, help="<utt> <path or command |> lines; " + _AUDIO_HELP
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help="the most padded audio per model call; None: the model's "
        "eval.batch_seconds, as in stage 4",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=200,
        help="utterances per output table: the unit of resuming",
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu, or cuda[:i] for a final/ directory's model"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="embed the other utterances when some entries are missing, "
        "unreadable or too short, and list those in OUT/skipped.txt (default: "
        "name every bad entry and stop)",
    )


def run_embed(args: argparse.Namespace) -> None:
    deployment = load_deployment(args.model, args.device)
    index = embed_wav_scp(
        deployment,
        args.wav_scp,
        args.out,
        batch_seconds=args.batch_seconds,
        chunk_size=args.chunk_size,
        skip_bad=args.skip_bad,
    )
    logging.info("embeddings indexed in %s", index)


SUBCOMMANDS: List[Callable] = [add_info, add_verify, add_embed]


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
