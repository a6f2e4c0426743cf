#!/usr/bin/env python3
"""Embedding throughput of the deployed forms of a system, side by side on the same utterances.

Seven ways to embed, all waveform -> speaker embedding, with random weights (nothing downloaded):

- teacher + ECAPA: the upper-bound system, in PyTorch (the paper's XLSR-53 shape by default);
- student (PyTorch): the OS-KDFT student of the default SystemConfig (4 layers, adapters) + ECAPA;
- student (ONNX): the same model exported by stage 6's code, run by onnxruntime;
- student (int8): that graph after stage 6's dynamic int8 quantisation;
- fast (PyTorch, ONNX, int8): the same for the fast student, a thin CNN and a cheaper positional
  convolution (``--fast``: egs/voxceleb/conf/oskdft_fast.yaml's front end by default).

Every form embeds the same utterances (lengths spread over --min/--max-seconds), batched by
length as stage 4 does (at most --batch-seconds of padded audio per call). After one warm-up
round, each round times one pass of every form, rotating which goes first; the table gives the
median pass, utterances per second, the real-time factor (compute time / audio time) and the
speed-up over the teacher, plus each student form's worst cosine to the PyTorch student.

Usage: python bench/inference.py [--threads 2] [--repeats 3] [--num-utterances 8]
       python bench/inference.py --teacher-layers 12 --hidden-size 768   # a base-size teacher
"""

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from oskdft.cli.common import make_parser
from oskdft.config import SystemConfig, load_config
from oskdft.export.onnx import export_onnx, fold_weight_norm, parity, quantize_int8
from oskdft.inference.deploy import SAMPLE_RATE, Embedder, embed_by_length
from oskdft.inference.onnx_runtime import OnnxEmbedder
from oskdft.model_dir import TorchEmbedder
from oskdft.models.system import build_model
from oskdft.models.teacher import XLSR53_ARCH, build_ssl_from_arch

FAST_CONFIG = Path(__file__).resolve().parents[1] / "egs" / "voxceleb" / "conf" / "oskdft_fast.yaml"


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--threads", type=int, default=2, help="CPU threads of torch and of onnxruntime"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after a warm-up)")
    parser.add_argument("--num-utterances", type=int, default=8)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument(
        "--batch-seconds", type=float, default=24.0, help="the most padded audio per model call"
    )
    parser.add_argument("--teacher-layers", type=int, default=XLSR53_ARCH["num_hidden_layers"])
    parser.add_argument(
        "--hidden-size",
        type=int,
        default=XLSR53_ARCH["hidden_size"],
        help="teacher width (the FFN is 4x, heads 64 wide)",
    )
    parser.add_argument(
        "--fast",
        nargs=3,
        type=int,
        default=None,
        metavar=("CNN_DIM", "POS_KERNEL", "POS_GROUPS"),
        help="the fast student's ssl.thin_cnn_dim, pos_conv_kernel, pos_conv_groups "
        f"(default: those of {FAST_CONFIG.relative_to(FAST_CONFIG.parents[3])})",
    )
    return parser


def fast_front_end(config: Path = FAST_CONFIG) -> List[int]:
    """The thin CNN width, positional kernel and groups of ``config``'s student."""
    ssl = load_config(config).ssl
    return [ssl.thin_cnn_dim, ssl.pos_conv_kernel, ssl.pos_conv_groups]


def build_systems(
    teacher_layers: int, hidden_size: int, fast: List[int]
) -> Dict[str, Tuple[SystemConfig, torch.nn.Module]]:
    """name -> (config, model): the teacher + ECAPA, the student + ECAPA of the default
    SystemConfig and the fast student (``fast``: thin CNN width, positional kernel, groups)."""
    arch = {
        **XLSR53_ARCH,
        "num_hidden_layers": teacher_layers,
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_attention_heads": hidden_size // 64,
    }
    teacher = build_ssl_from_arch(arch).eval()
    cfg = SystemConfig()
    configs = {
        "teacher + ECAPA": dataclasses.replace(
            cfg, ssl=dataclasses.replace(cfg.ssl, source="teacher", adapters=False)
        ),
        "student": cfg,
        "fast": dataclasses.replace(
            cfg,
            ssl=dataclasses.replace(
                cfg.ssl, thin_cnn_dim=fast[0], pos_conv_kernel=fast[1], pos_conv_groups=fast[2]
            ),
        ),
    }
    return {name: (config, build_model(config, teacher).eval()) for name, config in configs.items()}


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    args.fast = args.fast or fast_front_end()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    seconds = np.linspace(args.min_seconds, args.max_seconds, args.num_utterances)
    utterances = [
        0.1 * rng.standard_normal(round(s * SAMPLE_RATE)).astype(np.float32) for s in seconds
    ]
    max_samples = round(args.batch_seconds * SAMPLE_RATE)

    systems = build_systems(args.teacher_layers, args.hidden_size, args.fast)
    params = {
        name: sum(p.numel() for p in model.parameters()) for name, (_, model) in systems.items()
    }
    embedders: Dict[str, Embedder] = {
        "teacher + ECAPA": TorchEmbedder(systems["teacher + ECAPA"][1])
    }
    sizes: Dict[str, int] = {}
    export_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("student", "fast"):
            cfg, student = systems[name]
            embedders[f"{name} (PyTorch)"] = TorchEmbedder(student)
            onnx_path = Path(tmp) / f"{name}.onnx"
            int8_path = Path(tmp) / f"{name}.int8.onnx"
            start = time.perf_counter()
            # Stage 6's steps, on a copy (rebuilt as load_final does): the PyTorch student
            # keeps its weight norm, as stage 4 runs it.
            exported = build_model(cfg, ssl_config=student.ssl_encoder.config)
            exported.load_state_dict(student.state_dict())
            export_onnx(fold_weight_norm(exported), onnx_path)
            export_seconds = max(export_seconds, time.perf_counter() - start)
            quantize_int8(onnx_path, int8_path)
            for form, path in (("ONNX", onnx_path), ("int8", int8_path)):
                embedders[f"{name} ({form})"] = OnnxEmbedder(path, threads=args.threads)
                sizes[f"{name} ({form})"] = path.stat().st_size

        times: Dict[str, List[float]] = {name: [] for name in embedders}
        names = list(embedders)
        for round_index in range(args.repeats + 1):  # round 0 warms up
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                start = time.perf_counter()
                embed_by_length(embedders[name], utterances, max_samples)
                if round_index > 0:
                    times[name].append(time.perf_counter() - start)
        agreement = {
            name: parity(
                embedders[name.split()[0] + " (PyTorch)"], embedders[name], utterances[:3]
            )["min_cosine"]
            for name in sizes
        }

    medians = {name: statistics.median(values) for name, values in times.items()}
    audio_seconds = float(seconds.sum())
    print(
        f"{len(utterances)} utterances of {args.min_seconds:g}-{args.max_seconds:g} s "
        f"({audio_seconds:.1f} s of audio), batches of <= {args.batch_seconds:g} s padded, "
        f"{args.threads} CPU threads, median of {args.repeats} interleaved rounds; teacher "
        f"{args.teacher_layers} layers x {args.hidden_size}; fast: CNN {args.fast[0]}, "
        f"positional conv kernel {args.fast[1]}, {args.fast[2]} groups; ONNX export took "
        f"{export_seconds:.1f} s"
    )
    print(
        f"| {'system':<18} | {'params (M)':>10} | {'file (MB)':>9} | {'s / pass':>8} | "
        f"{'utt/s':>6} | {'RTF':>6} | {'speed-up':>8} | {'cos to PyTorch':>14} |"
    )
    print("|" + "---|" * 8)
    teacher_time = medians["teacher + ECAPA"]
    for name, median in medians.items():
        count = params[name.split(" (")[0]]
        size = f"{sizes[name] / 2**20:.0f}" if name in sizes else "-"
        cosine = f"{agreement[name]:.6f}" if name in agreement else "-"
        print(
            f"| {name:<18} | {count / 1e6:>10.1f} | {size:>9} | {median:>8.3f} | "
            f"{len(utterances) / median:>6.2f} | {median / audio_seconds:>6.3f} | "
            f"{teacher_time / median:>7.2f}x | {cosine:>14} |"
        )


if __name__ == "__main__":
    main()
