#!/usr/bin/env python3
"""Stage 6 for one system: export the trained model to ONNX (waveform -> embedding), check it.

Writes one ONNX graph from 16 kHz waveform (dynamic batch and length, with a lengths input for
padded batches) to the speaker embedding, checks that onnxruntime and PyTorch agree on real
utterances of PARITY_SET (cosine > 0.9999, or the stage fails), optionally quantises it to int8
(its parity is reported) and traces it with TorchScript, and copies the training config and
stage 5's calibration, metrics and back-end models next to it, so that `oskdft verify` and
`oskdft embed` can use the export alone.

Inputs:  FINAL_DIR/{config.yaml,model.pt,ssl/,meta.json}, PARITY_SET/wav.scp,
         FINAL_DIR/../scores/{calibration.json,metrics.json,*.npz} (when stage 5 has run)
Outputs: EXPORT_DIR/{model.onnx,model.int8.onnx,model.torchscript.pt,meta.json,config.yaml,
         calibration.json,metrics.json,*.npz}, log in EXPORT_DIR/../log/export.log

Usage: local/export_model.py --parity-set data/test exp/oskdft/final exp/oskdft/export
"""

import argparse
import logging
from pathlib import Path

from oskdft.cli.common import make_parser, run_script, str2bool
from oskdft.export.onnx import export_system
from oskdft.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--parity-set",
        required=True,
        help="Kaldi data dir whose utterances the parity check embeds",
    )
    parser.add_argument(
        "--num-parity-utterances",
        type=int,
        default=4,
        help="utterances of the parity set, evenly spaced over its wav.scp",
    )
    parser.add_argument(
        "--max-parity-seconds",
        type=float,
        default=8.0,
        help="each parity utterance is cut to this length",
    )
    parser.add_argument(
        "--int8",
        type=str2bool,
        default=True,
        help="also write model.int8.onnx, dynamically quantised for CPU",
    )
    parser.add_argument(
        "--torchscript",
        type=str2bool,
        default=False,
        help="also write model.torchscript.pt (torch.jit.trace, deprecated "
        "in torch; for libtorch users)",
    )
    parser.add_argument("final_dir", help="the trained model, e.g. exp/oskdft/final")
    parser.add_argument("export_dir", help="output, e.g. exp/oskdft/export")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(log_file=Path(args.export_dir).parent / "log" / "export.log")
    logging.info("%s", vars(args))
    export_system(
        final_dir=args.final_dir,
        export_dir=args.export_dir,
        parity_set=args.parity_set,
        num_parity_utterances=args.num_parity_utterances,
        max_parity_seconds=args.max_parity_seconds,
        int8=args.int8,
        torchscript=args.torchscript,
    )


if __name__ == "__main__":
    run_script(main)
