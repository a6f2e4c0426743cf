#!/usr/bin/env python3
"""The teacher cache against the online teacher, for the same OS-KDFT student.

For each configuration (``mini``: a small stand-in for egs/mini's shapes; ``paper``: the
paper's shapes, XLSR-53 teacher and its 4-layer student with ECAPA C=512, random weights):

1. cache write: stage 2's writer (teacher forward + fp16 storage) over --windows random-noise
   windows of 2 s; prints windows per second and the bytes stored per second of audio;
2. training step: load a batch through ``TrainingWindows`` (cached arrays, or clean audio for
   the teacher), optionally run the teacher, then the trainer's own step
   (:func:`oskdft.training.objective.optimizer_step`: KD + AAM forward, backward, Adam).
   Cached and online steps alternate, --repeats times after one warm-up each; medians are
   reported, with the ratio online / cached.

The batch is small on CPU (--batch-size): the ratio, not the absolute time, is the point.

Usage: . ./path.sh && python bench/teacher_cache.py [--configs mini paper] [--batch-size 2] \\
           [--windows 16] [--repeats 3] [--device cpu]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet, SupervisionSegment
from torch.utils.data import DataLoader

from oskdft.cache.key import CacheSpec
from oskdft.cache.teacher_cache import merge_shards, write_job_shards
from oskdft.cli.common import make_parser
from oskdft.config import SystemConfig
from oskdft.data.audio import mono_cut, recording_from_entry
from oskdft.data.dataset import OneWindowPerUtteranceSampler, TrainingWindows, collate_windows
from oskdft.data.windows import cut_windows
from oskdft.layout import SAMPLE_RATE
from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import build_kd_loss, kd_layers
from oskdft.models.system import build_model
from oskdft.models.teacher import XLSR53_ARCH, SSLTeacher, build_ssl_from_arch, num_frames
from oskdft.training.objective import TrainingObjective, optimizer_step
from oskdft.training.schedules import LossWeights

MINI_ARCH = {
    "model_type": "wav2vec2",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": [64] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}


def system(name):
    """Teacher architecture and student system config of a configuration."""
    cfg = SystemConfig()  # the paper's: 4-layer student with adapters, ECAPA C=512, mse_last
    if name == "paper":
        return XLSR53_ARCH, cfg
    cfg.ssl.num_layers, cfg.ssl.adapter_dim = 2, 16
    cfg.backend.channels, cfg.backend.embed_dim = 64, 32
    return MINI_ARCH, cfg


def make_windows(root, num_windows, speakers=4):
    """``num_windows`` random-noise utterances of 2 s: one window each."""
    rng = np.random.default_rng(0)
    path = root / "windows.jsonl.gz"
    with CutSet.open_writer(path) as writer:
        for i in range(num_windows):
            utt, speaker = f"s{i % speakers}-u{i}", f"s{i % speakers}"
            wav = root / f"{utt}.wav"
            audio = 0.1 * rng.standard_normal(2 * SAMPLE_RATE).astype(np.float32)
            sf.write(wav, audio, SAMPLE_RATE)
            recording = recording_from_entry(utt, str(wav))
            supervision = SupervisionSegment(
                id=utt, recording_id=utt, start=0.0, duration=recording.duration, speaker=speaker
            )
            utterance = mono_cut(recording, cut_id=utt, supervisions=[supervision])
            for window in cut_windows(utterance, 2.0, 1.0):
                writer.write(window)
    return path, [f"s{k}" for k in range(speakers)]


def write_cache(manifest, out, teacher, layers, args):
    config = teacher.hf_model.config
    spec = CacheSpec(
        teacher="random",
        teacher_fingerprint="-",
        layers=tuple(layers),
        hidden_size=config.hidden_size,
        frames=int(num_frames(config, 2 * SAMPLE_RATE)),
        frame_shift=0.02,
        sample_rate=SAMPLE_RATE,
        window_seconds=2.0,
        hop_seconds=1.0,
        storage="fp16",
        num_windows=args.windows,
        windows_fingerprint="-",
    )
    start = time.perf_counter()
    write_job_shards(
        manifest,
        out,
        spec,
        teacher,
        1,
        1,
        shard_size=args.windows,
        batch_size=args.batch_size,
        device=torch.device(args.device),
    )
    seconds = time.perf_counter() - start
    merge_shards(manifest, out, spec, num_jobs=1, shard_size=args.windows)
    size = sum(p.stat().st_size for p in (out / "shards").glob("*.f16"))
    return args.windows / seconds, size / (2.0 * args.windows)


def train_steps(name, root, args):
    arch, cfg = system(name)
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher = SSLTeacher(build_ssl_from_arch(arch)).to(device)
    layers = kd_layers(cfg, teacher.num_layers)
    manifest, speakers = make_windows(root, args.windows)
    windows_per_second, bytes_per_audio_second = write_cache(
        manifest, root / "cache", teacher, layers, args
    )

    model = build_model(cfg, teacher.hf_model)
    kd_loss = build_kd_loss(cfg, model.ssl.hidden_size, teacher.hidden_size, teacher.num_layers)
    objective = TrainingObjective(model, kd_loss, AAMSoftmax(model.embed_dim, len(speakers)))
    objective = objective.to(device).train()
    optimizer = torch.optim.Adam(objective.parameters(), lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # fp32: no loss scaling
    weights = LossWeights(kd=1.0, sv=1.0)
    cached = TrainingWindows(root / "cache" / "cuts.jsonl.gz", speakers, teacher_layers=layers)
    online = TrainingWindows(manifest, speakers, teacher_wav=True)

    def loader(dataset):
        sampler = OneWindowPerUtteranceSampler(dataset.windows_per_utterance, seed=0)
        while True:
            yield from DataLoader(
                dataset,
                args.batch_size,
                sampler=sampler,
                collate_fn=collate_windows,
                drop_last=True,
            )

    def step(batches, mode):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        batch = next(batches)
        if mode == "cached":
            targets = {k: v.to(device).float() for k, v in batch["teacher_hidden"].items()}
        else:
            targets = teacher(batch["teacher_wav"].to(device))
        optimizer_step(
            objective,
            optimizer,
            scaler,
            batch["student_wav"].to(device),
            batch["speaker"].to(device),
            targets,
            weights,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    batches = {"cached": loader(cached), "online": loader(online)}
    times = {"cached": [], "online": []}
    for repeat in range(args.repeats + 1):
        for mode in ("cached", "online"):
            elapsed = step(batches[mode], mode)
            if repeat:  # the first of each is a warm-up
                times[mode].append(elapsed)
    cached_s, online_s = (statistics.median(times[m]) for m in ("cached", "online"))
    return {
        "config": name,
        "cached_s": cached_s,
        "online_s": online_s,
        "ratio": online_s / cached_s,
        "windows_per_s": windows_per_second,
        "bytes_per_audio_s": bytes_per_audio_second,
        "layers": layers,
        "dim": teacher.hidden_size,
    }


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--configs", nargs="+", default=["mini", "paper"], choices=["mini", "paper"]
    )
    parser.add_argument("--batch-size", type=int, default=2, help="windows per step")
    parser.add_argument("--windows", type=int, default=16, help="windows cached")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per mode")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    rows = []
    for name in args.configs:
        with tempfile.TemporaryDirectory() as root:
            rows.append(train_steps(name, Path(root), args))
    print(
        f"\ndevice {args.device}, {torch.get_num_threads()} threads, batch {args.batch_size} "
        f"x 2 s windows, medians of {args.repeats} steps"
    )
    print(
        "| config | KD layers x dim | step, cached | step, online teacher | online / cached "
        "| cache write | stored per s of audio |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {len(r['layers'])} x {r['dim']} | {r['cached_s']:.3f} s "
            f"| {r['online_s']:.3f} s | {r['ratio']:.2f}x | {r['windows_per_s']:.1f} windows/s "
            f"| {r['bytes_per_audio_s'] / 1024:.1f} KiB |"
        )


if __name__ == "__main__":
    main()
