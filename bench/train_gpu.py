#!/usr/bin/env python3
"""Training throughput of OS-KDFT on a GPU: online teacher against cached teacher targets.

The paper's shapes with random weights (nothing is downloaded or read): the XLSR-53-shaped
teacher (24 pre-LN layers, 1024 wide), the 4-layer student copied from it with adapters, ECAPA-
TDNN C=512 and AAM-softmax over 5,994 speakers; a batch of 128 windows of 2 s (the student sees
256 rows), bf16 autocast, Adam, the trainer's own step function
(:func:`oskdft.training.objective.optimizer_step`). Batches are random tensors made on the
host, so no data stack (lhotse, kaldiio) is needed.

Two modes, each for ``--steps`` timed steps after ``--warmup`` steps, in blocks of
``--block`` steps whose median speed is reported:

- online: the frozen teacher runs on the clean window in every step;
- cached: the teacher's last hidden state arrives with the batch as float16 on the host (what
  stage 2's cache gives), and the teacher is not on the GPU.

The online mode runs first, then the teacher leaves the GPU: each mode's peak memory is its
own (interleaving the modes would keep the teacher's weights resident in both).

Usage (from the repository root; one GPU, about 5 minutes on an H100):
    PYTHONPATH=. torchrun --nproc_per_node 1 bench/train_gpu.py
    PYTHONPATH=. python bench/train_gpu.py --tiny       # a CPU check with tiny shapes
"""

import argparse
import statistics
import time
from typing import Dict, List

import torch
from torch.nn.parallel import DistributedDataParallel

from oskdft.cli.common import make_parser
from oskdft.config import SystemConfig
from oskdft.layout import SAMPLE_RATE
from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import build_kd_loss
from oskdft.models.system import build_model
from oskdft.models.teacher import XLSR53_ARCH, SSLTeacher, build_ssl_from_arch
from oskdft.training.distributed import init_distributed, shutdown
from oskdft.training.objective import TrainingObjective, autocast, optimizer_step
from oskdft.training.schedules import LossWeights

NUM_SPEAKERS = 5994  # VoxCeleb2 dev
TINY_ARCH = {
    "model_type": "wav2vec2",
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
}


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch (windows)")
    parser.add_argument("--seconds", type=float, default=2.0, help="window length")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    parser.add_argument("--block", type=int, default=10, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per mode")
    parser.add_argument(
        "--amp",
        default="bf16",
        choices=("bf16", "fp16", "none"),
        help="autocast dtype on the GPU (the CPU runs fp32)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny shapes (3-layer, 32-wide teacher, 2-layer student, batch 4 "
        "of 1 s, 3 steps, 40 speakers): a quick check, on the CPU too",
    )
    return parser


def tiny_arguments(args: argparse.Namespace) -> None:
    args.batch_size, args.seconds, args.steps, args.block, args.warmup = 4, 1.0, 3, 3, 1


def build(tiny: bool, device: torch.device, world_size: int):
    """The teacher, the training objective (DDP-wrapped when distributed) and its Adam."""
    cfg = SystemConfig()  # the paper's student: 4 layers, adapters, ECAPA C=512, mse_last
    arch, speakers = XLSR53_ARCH, NUM_SPEAKERS
    if tiny:
        cfg.ssl.num_layers, cfg.ssl.adapter_dim = 2, 8
        cfg.backend.channels, cfg.backend.embed_dim = 16, 8
        cfg.backend.pooled_channels, cfg.backend.attention_channels = 48, 16
        arch, speakers = TINY_ARCH, 40
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(arch))
    model = build_model(cfg, teacher.hf_model)
    kd_loss = build_kd_loss(cfg, model.ssl.hidden_size, teacher.hidden_size, teacher.num_layers)
    objective = TrainingObjective(model, kd_loss, AAMSoftmax(model.embed_dim, speakers))
    objective = objective.to(device)
    trained = objective
    if world_size > 1:
        if device.type == "cuda":
            objective = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective)
        trained = DistributedDataParallel(
            objective, device_ids=[device] if device.type == "cuda" else None
        )
    groups = [
        {"params": params, "lr": 1e-5} for params in objective.param_groups().values() if params
    ]
    return teacher, trained, torch.optim.Adam(groups)


def run_mode(
    mode: str,
    teacher: SSLTeacher,
    trained,
    optimizer,
    args,
    device,
    amp_dtype,
    per_rank_batch: int,
    world_size: int,
) -> Dict[str, float]:
    """Train ``args.warmup + args.steps`` steps; speeds are medians over blocks."""
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    samples = round(args.seconds * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(1)
    wav = torch.randn(per_rank_batch, samples, generator=generator)
    speakers = torch.randint(0, trained_speakers(trained), (per_rank_batch,), generator=generator)
    layer = teacher.num_layers
    if mode == "cached":
        frames = teacher.num_frames(samples)
        hidden = torch.randn(per_rank_batch, frames, teacher.hidden_size, generator=generator)
        hidden = hidden.half()
        if device.type == "cuda":
            hidden, wav = hidden.pin_memory(), wav.pin_memory()
    weights = LossWeights(kd=0.99, sv=1.0)

    def step() -> None:
        student_wav = wav.to(device, non_blocking=True)
        if mode == "online":
            with autocast(device, amp_dtype):
                states = teacher(wav.to(device, non_blocking=True))
        else:
            states = {layer: hidden.to(device, non_blocking=True).float()}
        optimizer_step(
            trained,
            optimizer,
            scaler,
            student_wav,
            speakers.to(device, non_blocking=True),
            states,
            weights,
            amp_dtype,
        )

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    block_speeds: List[float] = []
    for _ in range(max(1, args.steps // args.block)):
        started = time.perf_counter()
        for _ in range(args.block):
            step()
        synchronize(device)
        block_speeds.append(args.block / (time.perf_counter() - started))
    steps_per_s = statistics.median(block_speeds)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "steps_per_s": steps_per_s,
        "samples_per_s": steps_per_s * per_rank_batch * world_size,
        "peak_gib": peak,
    }


def trained_speakers(trained) -> int:
    objective = trained.module if isinstance(trained, DistributedDataParallel) else trained
    return objective.aam.weight.shape[0]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def format_table(
    results: Dict[str, Dict[str, float]], device: torch.device, args, world_size: int
) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"OS-KDFT training step, {name} x {world_size}, global batch {args.batch_size} x "
        f"{args.seconds:g} s, {args.amp if device.type == 'cuda' else 'fp32'}"
        + (" (tiny shapes)" if args.tiny else ""),
        f"{'teacher':<10}{'steps/s':>10}{'samples/s':>12}{'peak GPU memory':>18}",
    ]
    for mode, r in results.items():
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB"
        lines.append(f"{mode:<10}{r['steps_per_s']:>10.2f}{r['samples_per_s']:>12.1f}{peak:>18}")
    ratio = results["cached"]["steps_per_s"] / results["online"]["steps_per_s"]
    lines.append(f"cached/online speed ratio: {ratio:.2f}x")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    if args.tiny:
        tiny_arguments(args)
    ctx = init_distributed("auto")
    try:
        device = ctx.device
        if args.batch_size % ctx.world_size:
            raise SystemExit(
                f"--batch-size {args.batch_size} is not a multiple of {ctx.world_size} processes"
            )
        per_rank = args.batch_size // ctx.world_size
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[args.amp]
        if device.type != "cuda":
            amp_dtype = None
        teacher, trained, optimizer = build(args.tiny, device, ctx.world_size)
        results = {}
        teacher.to(device)
        results["online"] = run_mode(
            "online", teacher, trained, optimizer, args, device, amp_dtype, per_rank, ctx.world_size
        )
        # The cached mode has no teacher on the GPU; on the host it only gives shapes.
        teacher.cpu()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        results["cached"] = run_mode(
            "cached", teacher, trained, optimizer, args, device, amp_dtype, per_rank, ctx.world_size
        )
        if ctx.is_main:
            print(format_table(results, device, args, ctx.world_size), flush=True)
    finally:
        shutdown(ctx)


if __name__ == "__main__":
    main()
