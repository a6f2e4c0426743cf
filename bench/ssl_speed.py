#!/usr/bin/env python3
"""SSL size and speed of the paper's teacher and its OS-KDFT students, side by side.

Builds the paper's configuration from config alone: the XLSR-53 shape (24 pre-LN layers, 1024
wide, LayerNorm CNN; random weights, nothing downloaded), the 4-layer student of the default
SystemConfig (with its adapters), the same student with thinner CNNs (``ssl.thin_cnn_dim``), the
fast students (a thin CNN and a cheaper positional convolution, ``ssl.pos_conv_kernel`` and
``ssl.pos_conv_groups``; the teacher's: kernel 128, 16 groups), and each with its ECAPA-TDNN for
the full embedding. Every model runs on the same 4 s of audio at
each batch size, in interleaved rounds (one call of each model per round, after warm-up calls;
the library's :func:`oskdft.models.speed.median_times`), and the table gives the median time
and the ratio to the teacher (SSL rows to the teacher's SSL, embedding rows to the teacher +
ECAPA).

Usage: python bench/ssl_speed.py [--threads 2] [--repeats 3] [--thin-cnn-dims 256 128 64]
           [--fast-cnn-dims 64 32] [--pos-convs 128:64 32:16] [--ssl-only]
       python bench/ssl_speed.py --device cuda --repeats 20
"""

import argparse
import dataclasses
from typing import Dict, List, Tuple

import torch

from oskdft.cli.common import make_parser
from oskdft.config import SystemConfig
from oskdft.models.speed import median_times
from oskdft.models.system import build_model
from oskdft.models.teacher import XLSR53_ARCH, SSLTeacher, build_ssl_from_arch


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after a warm-up)")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--thin-cnn-dims",
        type=int,
        nargs="*",
        default=[256, 128, 64],
        help="CNN widths of the thin-CNN students",
    )
    parser.add_argument(
        "--fast-cnn-dims",
        type=int,
        nargs="+",
        default=[64],
        help="CNN widths of the fast students (each with every --pos-convs)",
    )
    parser.add_argument(
        "--pos-convs",
        nargs="*",
        default=["128:64", "32:16", "128:1024"],
        metavar="KERNEL:GROUPS",
        help="positional convolutions of the fast students",
    )
    parser.add_argument(
        "--ssl-only",
        action="store_true",
        help="time the SSL encoders alone (no + ECAPA rows): half the run, more rounds",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser


def build_candidates(
    thin_dims: List[int], fast_cnn_dims: List[int], pos_convs: List[str], device: str
) -> Dict[str, Tuple[torch.nn.Module, str]]:
    """name -> (model called on a waveform batch, reference row for its ratio)."""
    teacher_model = build_ssl_from_arch(XLSR53_ARCH).eval()
    cfg = SystemConfig()  # the paper's student: 4 layers, adapters, ECAPA C=512
    teacher_system = build_model(
        dataclasses.replace(
            cfg, ssl=dataclasses.replace(cfg.ssl, source="teacher", adapters=False)
        ),
        teacher_model,
    )
    candidates = {
        "teacher SSL": (SSLTeacher(teacher_model), "teacher SSL"),
        "teacher + ECAPA": (teacher_system, "teacher + ECAPA"),
    }
    students = {"student": {}}
    students.update({f"student thin-CNN {thin}": {"thin_cnn_dim": thin} for thin in thin_dims})
    for fast_cnn_dim in fast_cnn_dims:
        for pos_conv in pos_convs:
            kernel, groups = (int(n) for n in pos_conv.split(":"))
            students[f"fast CNN {fast_cnn_dim} pos k{kernel} g{groups}"] = {
                "thin_cnn_dim": fast_cnn_dim,
                "pos_conv_kernel": kernel,
                "pos_conv_groups": groups,
            }
    for label, ssl_fields in students.items():
        student_cfg = dataclasses.replace(cfg, ssl=dataclasses.replace(cfg.ssl, **ssl_fields))
        system = build_model(student_cfg, teacher_model)
        candidates[f"{label} SSL"] = (system.ssl, "teacher SSL")
        candidates[f"{label} + ECAPA"] = (system, "teacher + ECAPA")
    return {name: (model.eval().to(device), ref) for name, (model, ref) in candidates.items()}


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    torch.manual_seed(0)
    candidates = build_candidates(
        args.thin_cnn_dims, args.fast_cnn_dims, args.pos_convs, args.device
    )
    if args.ssl_only:
        candidates = {name: c for name, c in candidates.items() if c[1] == "teacher SSL"}
    models = [model for model, _ in candidates.values()]
    medians: Dict[Tuple[str, int], float] = {}
    for batch in args.batch_sizes:
        times = median_times(models, args.seconds, batch, args.repeats, args.threads, args.device)
        medians.update({(name, batch): t for name, t in zip(candidates, times, strict=True)})
    params = {
        name: sum(p.numel() for p in model.parameters()) for name, (model, _) in candidates.items()
    }
    print(
        f"{args.seconds:g} s of audio, device {args.device}, {args.threads} CPU threads, "
        f"median of {args.repeats} interleaved rounds; ratios to the row in brackets"
    )
    header = f"{'model':<38}{'params (M)':>11}{'ratio':>7}"
    for batch in args.batch_sizes:
        header += f"{f'b{batch} time (s)':>15}{'ratio':>7}"
    print(header)
    for name, (_, ref) in candidates.items():
        row = f"{name:<38}{params[name] / 1e6:>11.1f}{params[name] / params[ref]:>7.3f}"
        for batch in args.batch_sizes:
            ratio = medians[name, batch] / medians[ref, batch]
            row += f"{medians[name, batch]:>15.4f}{ratio:>7.3f}"
        print(f"{row}  [{ref}]")


if __name__ == "__main__":
    main()
