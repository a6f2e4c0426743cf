"""bench/loader.py with tiny sizes: the corpus it generates, and its tables' arithmetic."""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "loader.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("loader_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sources_have_their_lengths_and_rirs_last_at_most_one_second(tmp_path):
    bench = load_bench()
    args = bench.get_parser().parse_args([])
    bench.tiny_arguments(args)
    args.noise_seconds = 2.0  # unlike music and speech under --tiny: each set's own length
    written = bench.write_corpus(tmp_path, args)
    for name, (files, _) in bench.SOURCES.items():
        scp = [line.split() for line in (tmp_path / name / "wav.scp").read_text().splitlines()]
        seconds = [sf.info(path).duration for _, path in scp]
        assert len(seconds) == files
        assert abs(sum(seconds) - written[name]) < 1e-3 * files
        if name == "rirs":
            assert max(seconds) <= 1.0
        else:  # lengths vary from 0.5x to 1.5x the mean the flags give
            mean = {
                "musan_music": args.music_seconds,
                "musan_speech": args.speech_seconds,
                "musan_noise": 2.0,
            }[name]
            assert all(0.5 * mean - 1e-3 <= s <= 1.5 * mean + 1e-3 for s in seconds)
    utt2spk = (tmp_path / "train" / "utt2spk").read_text().splitlines()
    assert len(utt2spk) == args.speakers * args.utts_per_speaker


def test_tiny_run_prints_consistent_rates_and_the_workers_a_gpu_needs():
    output = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--tiny",
            "--workers",
            "1",
            "2",
            "--steps-per-second",
            "100",
            "1000",
        ],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rows = {
        (m[1], int(m[2])): [float(x) for x in m.groups()[2:]]
        for m in re.finditer(
            r"^\| (clean|augmented) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+)x \| ([\d.]+) "
            r"\| ([\d.]+)x \|$",
            output,
            re.M,
        )
    }
    assert set(rows) == {(mode, w) for mode in ("clean", "augmented") for w in (1, 2)}
    for (mode, workers), (rate, per_worker, scaling, ms, vs_clean) in rows.items():
        assert rate > 0 and ms > 0
        assert abs(per_worker - rate / workers) <= 1
        assert abs(scaling - rate / rows[mode, 1][0]) <= 0.01 + 0.01 * scaling
        clean_ms = rows["clean", workers][3]
        assert abs(vs_clean - ms / clean_ms) <= 0.01 + 0.01 * vs_clean
    needs = {
        float(m[1]): (int(m[2]), int(m[3]), int(m[4]))
        for m in re.finditer(r"^\| ([\d.]+) \| (\d+) \| (\d+) \| (\d+) \|$", output, re.M)
    }
    assert set(needs) == {100.0, 1000.0}
    for steps, (windows, augmented, clean) in needs.items():
        assert windows == steps * 4  # --tiny: batch 4
        for workers, ms in ((augmented, rows["augmented", 1][3]), (clean, rows["clean", 1][3])):
            # the printed ms is rounded to 0.01: either side of it may decide the ceiling
            assert math.ceil(windows * (ms - 0.005) / 1000) <= workers
            assert workers <= math.ceil(windows * (ms + 0.005) / 1000)
    assert "bench/train_gpu.py steps/s: not measured" in output
