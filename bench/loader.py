#!/usr/bin/env python3
"""Training windows per second per data-loader worker, the paper's augmentation against clean
windows side by side, from 1 to N workers, and the workers one GPU needs at a step rate.

The bench generates its data in a temporary directory with the synthesisers of
:mod:`oskdft.recipes.synthetic`: MUSAN-like sources of realistic length (music and babble speech
files of minutes, noise files of seconds, room impulse responses up to 1 s; MUSAN averages about
4 min per music file, 8 min per speech file and 20 s per noise file) and a VoxCeleb-like
training set (utterances of 4-10 s), as Kaldi data dirs. The recipe's own stages 0 and 1 turn
them into manifests and windows, and stage 3's data path reads them: ``TrainingWindows`` with
the system's ``augment`` section (the clean window as well when its teacher runs online),
``OneWindowPerUtteranceSampler``, ``collate_windows``, a torch ``DataLoader`` with the config's
``optim.batch_size``. "clean" is the same dataset without augmentation.

In each of ``--repeats`` rounds every worker count runs clean and augmented in turn; a
measurement skips one batch per worker (start-up), then times ``--batches-per-worker`` batches
per worker (wall clock: how the loader scales), and counts the workers' CPU time per window
(what a window costs, whatever else loads the machine). The tables give medians; the workers a
GPU needs come from the CPU time per window at the first worker count, each worker on a free
core. Audio stays in the page cache here, as MUSAN (11 GB) does on a training node.

Usage: . ./path.sh && OMP_NUM_THREADS=1 python bench/loader.py [--workers 1 2 4] \\
           [--steps-per-second 1 2 4 8] [--repeats 3] [--tiny]
"""

import argparse
import dataclasses
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from oskdft.cli.common import make_parser
from oskdft.config import load_config, load_data_config
from oskdft.data.dataset import OneWindowPerUtteranceSampler, TrainingWindows, collate_windows
from oskdft.data.kaldi_dir import replace_data_dir
from oskdft.data.manifests import prepare_manifests
from oskdft.data.windows import make_windows_from_config
from oskdft.recipes.synthetic import (
    SAMPLE_RATE,
    random_voice,
    synthesize_music,
    synthesize_noise,
    synthesize_rir,
    synthesize_speech,
)

# bench/train_gpu.py's online-teacher steps/s at the paper shape, once it has run on a GPU
# (README, Benchmarks); None: not measured yet.
TRAIN_GPU_STEPS_PER_SECOND: Optional[float] = None
MEASURE_GPU_RATE = "PYTHONPATH=. torchrun --nproc_per_node 1 bench/train_gpu.py"

# Augmentation sets (Kaldi dirs; stage 1 takes each one's kind from its name) -> files and the
# synthesiser of one file (from its generator and the arguments). Babble mixes up to 8
# different speech files. A RIR lasts 1.2 x its RT60: RT60 up to 0.83 s keeps it <= 1 s.
Synthesiser = Callable[[np.random.Generator, argparse.Namespace], np.ndarray]
SOURCES: Dict[str, Tuple[int, Synthesiser]] = {
    "musan_music": (4, lambda rng, a: synthesize_music(vary(a.music_seconds, rng), rng)),
    "musan_speech": (
        8,
        lambda rng, a: synthesize_speech(random_voice(rng), vary(a.speech_seconds, rng), rng),
    ),
    "musan_noise": (8, lambda rng, a: synthesize_noise(vary(a.noise_seconds, rng), rng)),
    "rirs": (16, lambda rng, a: 0.9 * synthesize_rir(rng, rt60_range=(0.2, 1.0 / 1.2))),
}
UTT_SECONDS = (4.0, 10.0)  # VoxCeleb2's utterances are 4 s or longer, 8 s on average


def get_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--config",
        default="egs/voxceleb/conf/oskdft.yaml",
        help="the system's YAML: its augment section, batch size, teacher mode",
    )
    parser.add_argument(
        "--data-config",
        default="egs/voxceleb/conf/data.yaml",
        help="the recipe's data YAML: window length and hop",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=default_workers(),
        help="data-loader worker counts (default: powers of 2 up to the cores)",
    )
    parser.add_argument(
        "--steps-per-second",
        type=float,
        nargs="+",
        default=[1, 2, 4, 8],
        help="GPU step rates to size the workers for",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--batches-per-worker",
        type=int,
        default=3,
        help="timed batches per worker in a measurement",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per batch (default: the config's optim.batch_size)",
    )
    parser.add_argument(
        "--music-seconds",
        type=float,
        default=240.0,
        help="mean length of a music file (lengths vary from 0.5x to 1.5x)",
    )
    parser.add_argument(
        "--speech-seconds", type=float, default=240.0, help="mean length of a babble speech file"
    )
    parser.add_argument(
        "--noise-seconds", type=float, default=20.0, help="mean length of a noise file"
    )
    parser.add_argument("--speakers", type=int, default=12, help="training speakers")
    parser.add_argument("--utts-per-speaker", type=int, default=4)
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tiny sizes (sources of seconds, batch 4, one round): a quick check",
    )
    return parser


def default_workers() -> List[int]:
    cores = len(os.sched_getaffinity(0))
    return [2**k for k in range(cores.bit_length()) if 2**k <= cores]


def tiny_arguments(args: argparse.Namespace) -> None:
    args.music_seconds = args.speech_seconds = args.noise_seconds = 4.0
    args.speakers, args.utts_per_speaker = 3, 2
    args.batch_size, args.batches_per_worker, args.repeats = 4, 2, 1


def vary(mean_seconds: float, rng: np.random.Generator) -> float:
    """A file length from 0.5x to 1.5x the mean."""
    return mean_seconds * rng.uniform(0.5, 1.5)


def write_wav(path: Path, audio: np.ndarray) -> str:
    sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return str(path)


def write_corpus(data_dir: Path, args: argparse.Namespace) -> Dict[str, float]:
    """The Kaldi dirs ``train`` and the augmentation sets (audio under ``data_dir/audio``).
    :return: the audio written per set, in seconds."""
    audio_dir = data_dir / "audio"
    audio_dir.mkdir(parents=True)
    written = {}
    for key, (name, (files, synthesise)) in enumerate(SOURCES.items()):
        wav_scp = {}
        for i in range(files):
            rng = np.random.default_rng([key, i])
            audio = synthesise(rng, args)
            wav_scp[f"{name}-{i:03d}"] = write_wav(audio_dir / f"{name}-{i:03d}.wav", audio)
            written[name] = written.get(name, 0.0) + len(audio) / SAMPLE_RATE
        replace_data_dir(data_dir / name, wav_scp)
    wav_scp, utt2spk = {}, {}
    for k in range(args.speakers):
        rng = np.random.default_rng([len(SOURCES), k])
        voice = random_voice(rng)
        for u in range(args.utts_per_speaker):
            utt = f"spk{k:03d}-{u:03d}"
            speech = synthesize_speech(voice, rng.uniform(*UTT_SECONDS), rng)
            wav_scp[utt] = write_wav(audio_dir / f"{utt}.wav", speech)
            utt2spk[utt] = f"spk{k:03d}"
    replace_data_dir(data_dir / "train", wav_scp, utt2spk)
    return written


def prepare_data(data_dir: Path, data_config: str) -> None:
    """Stages 0 and 1 on the generated corpus. It has no speakers to hold out: validation
    (which the loader never reads) is left empty."""
    data_cfg = dataclasses.replace(load_data_config(data_config), valid_speakers=0, valid_trials=0)
    prepare_manifests(data_dir, "train", aug_sets=list(SOURCES), num_threads=1)
    make_windows_from_config(data_dir, data_cfg, "train", list(SOURCES), config_path=data_config)


def epoch_pairs(sampler: OneWindowPerUtteranceSampler, count: int) -> List[Tuple[int, int]]:
    """The sampler's ``(epoch, window)`` pairs of as many epochs as ``count`` needs."""
    pairs, epoch = [], 0
    while len(pairs) < count:
        pairs += [(epoch, int(w)) for w in sampler.epoch_windows(epoch)]
        epoch += 1
    return pairs[:count]


def measure(
    dataset: TrainingWindows,
    pairs: List[Tuple[int, int]],
    workers: int,
    batch_size: int,
    batches_per_worker: int,
) -> Tuple[float, float]:
    """Windows per second the loader delivers after each worker's first batch, and the
    workers' CPU seconds per window (start-up included: about 30 ms a worker), which other
    load on the machine leaves alone."""
    timed = batches_per_worker * workers
    total = (timed + workers) * batch_size
    loader = DataLoader(
        dataset,
        batch_size,
        sampler=pairs[:total],
        num_workers=workers,
        collate_fn=collate_windows,
        drop_last=True,
    )
    cpu_before = children_cpu_seconds()
    batches = iter(loader)
    for _ in range(workers):
        next(batches)
    start, windows = time.perf_counter(), 0
    for batch in batches:
        windows += len(batch["student_wav"])
    elapsed = time.perf_counter() - start
    # The exhausted loader has joined its workers, so their CPU time is counted.
    cpu = children_cpu_seconds() - cpu_before
    assert windows == timed * batch_size, "the loader gave fewer windows than planned"
    return windows / elapsed, cpu / total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def format_report(
    rates: Dict[Tuple[str, int], float],
    cpu: Dict[Tuple[str, int], float],
    args: argparse.Namespace,
    batch_size: int,
    num_workers: int,
) -> str:
    """The rate table, then the workers needed per GPU step rate."""
    base = args.workers[0]
    plural = "s" if base > 1 else ""
    header = (
        f"| input | workers | windows/s | per worker | vs {base} worker{plural} "
        "| worker CPU ms per window | vs clean |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for workers in args.workers:
        for mode in ("clean", "augmented"):
            rate, ms = rates[mode, workers], 1000 * cpu[mode, workers]
            lines.append(
                f"| {mode} | {workers} | {rate:.0f} | {rate / workers:.0f} "
                f"| {rate / rates[mode, base]:.2f}x | {ms:.2f} "
                f"| {cpu[mode, workers] / cpu['clean', workers]:.2f}x |"
            )
    per_window = {mode: cpu[mode, base] for mode in ("clean", "augmented")}
    lines += [
        "",
        f"workers one GPU needs at batch {batch_size}, from the CPU time per window "
        + f"with {base} worker{plural} (a free core per worker):",
        "| GPU steps/s | windows/s | workers, augmented | workers, clean |",
        "|---|---:|---:|---:|",
    ]
    steps = list(args.steps_per_second)
    if TRAIN_GPU_STEPS_PER_SECOND is not None:
        steps.append(TRAIN_GPU_STEPS_PER_SECOND)
    for rate in steps:
        label = f"{rate:g}" + (
            " (bench/train_gpu.py)" if rate == TRAIN_GPU_STEPS_PER_SECOND else ""
        )
        needed = rate * batch_size
        lines.append(
            f"| {label} | {needed:.0f} | {math.ceil(needed * per_window['augmented'])} "
            f"| {math.ceil(needed * per_window['clean'])} |"
        )
    lines.append(
        f"the config's train.num_workers = {num_workers} feed up to "
        f"{num_workers / (per_window['augmented'] * batch_size):.1f} steps/s augmented"
    )
    if TRAIN_GPU_STEPS_PER_SECOND is None:
        lines.append(
            "bench/train_gpu.py steps/s: not measured (it has not run on a GPU); "
            f"measure with `{MEASURE_GPU_RATE}` and pass its online steps/s as "
            "--steps-per-second"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    if args.tiny:
        tiny_arguments(args)
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    batch_size = args.batch_size or cfg.optim.batch_size
    online = cfg.runs_teacher_online()
    with tempfile.TemporaryDirectory() as root:
        data_dir = Path(root)
        started = time.perf_counter()
        written = write_corpus(data_dir, args)
        prepare_data(data_dir, args.data_config)
        setup_s = time.perf_counter() - started
        datasets = {
            "clean": TrainingWindows.from_data_dir(
                data_dir, None, cfg.train.seed, teacher_wav=online
            ),
            "augmented": TrainingWindows.from_data_dir(
                data_dir, cfg.augment, cfg.train.seed, teacher_wav=online
            ),
        }
        sampler = OneWindowPerUtteranceSampler(
            datasets["clean"].windows_per_utterance, seed=cfg.train.seed
        )
        pairs = epoch_pairs(sampler, (args.batches_per_worker + 1) * max(args.workers) * batch_size)
        rounds: Dict[Tuple[str, int], List[float]] = {}
        cpu_rounds: Dict[Tuple[str, int], List[float]] = {}
        for _ in range(args.repeats):
            for workers in args.workers:
                for mode, dataset in datasets.items():
                    rate, cpu = measure(
                        dataset, pairs, workers, batch_size, args.batches_per_worker
                    )
                    rounds.setdefault((mode, workers), []).append(rate)
                    cpu_rounds.setdefault((mode, workers), []).append(cpu)
    rates = {key: statistics.median(values) for key, values in rounds.items()}
    cpu = {key: statistics.median(values) for key, values in cpu_rounds.items()}
    sources = ", ".join(
        f"{name} {SOURCES[name][0]} files {seconds / 60:.1f} min"
        for name, seconds in written.items()
    )
    print(
        f"{args.config}: augment p={cfg.augment.prob}, teacher {cfg.teacher.mode}"
        f"{' (the clean window is decoded too)' if online else ' (its arrays not read)'}; "
        f"batch {batch_size}, "
        f"{args.batches_per_worker} timed batches per worker, median of {args.repeats} "
        f"rounds; {len(os.sched_getaffinity(0))} cores\nsources: {sources}; corpus and "
        f"stages 0-1 took {setup_s:.0f} s"
    )
    print(format_report(rates, cpu, args, batch_size, cfg.train.num_workers))


if __name__ == "__main__":
    main()
