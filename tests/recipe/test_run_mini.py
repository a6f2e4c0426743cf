"""The whole mini recipe, as a user runs it: `bash run.sh` on CPU, stages 0-6.

The recipe is made small (small.conf: fewer speakers and epochs; the time it takes:
README.md#tests) and run twice, shared by the tests of this module: one system from
--train-config (oskdft_cached.yaml), then every system of run.conf. They check what the recipe
promises: every system trained, embedded, scored, exported; the OS-KDFT student clearly better
than the trivial baseline; a second run changing nothing, nor one naming fewer systems; stage 2
caching a teacher; the exported model serving `oskdft verify`; a rescoring of fewer systems
keeping the others' rows in the results table.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from oskdft.recipes.baseline import baseline_eers

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SYSTEMS = (
    re.search(r'^systems="([^"]+)"', (REPO / "egs" / "mini" / "run.conf").read_text(), re.M)
    .group(1)
    .split()
)

pytestmark = pytest.mark.slow
SKIPPING = "done with the same config and inputs: skipping"  # utils/done.sh's is_done
CACHED = HERE / "oskdft_cached.yaml"


def run_sh(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``run.sh --dir work`` on the small recipe."""
    return subprocess.run(
        [
            "bash",
            str(REPO / "run.sh"),
            "--dir",
            str(work),
            "--config",
            str(HERE / "small.conf"),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=2400,
    )


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The work directory and the second run: the cached system first (stages 0-5), so that
    the run of run.conf's systems is the last to write stage 2's marker."""
    work = tmp_path_factory.mktemp("mini")
    run = run_sh(work, "--train-config", str(CACHED), "--stop-stage", "5")
    assert run.returncode == 0, run.stderr[-4000:]
    run = run_sh(work)
    assert run.returncode == 0, run.stderr[-4000:]
    return work, run


def test_every_system_is_trained_scored_and_exported(mini):
    work, run = mini
    results = json.loads((work / "exp" / "results.json").read_text())
    rows = {(r["system"], r["backend"]) for r in results["rows"]}
    for system in SYSTEMS:
        assert (work / "exp" / system / "final" / "model.pt").is_file()
        assert (work / "exp" / system / "export" / "model.onnx").is_file()
        for backend in ("cosine", "cosine_mean", "plda", "asnorm", "fused"):
            assert (system, backend) in rows
    # The table ends the run on the terminal, once (one trial list).
    assert run.stdout.count("| oskdft | cosine |") == 1


def test_oskdft_beats_the_trivial_baseline_clearly(mini):
    work, _ = mini
    baseline = min(baseline_eers(work / "data" / "test")["mini"].values())
    metrics = json.loads((work / "exp" / "oskdft" / "scores" / "metrics.json").read_text())
    oskdft = metrics["trial_lists"]["mini"]["results"]["cosine"]["eer"]
    assert oskdft < baseline - 0.05, (oskdft, baseline)


def test_oskdft_validates_every_epoch_and_keeps_the_best(mini):
    work, _ = mini
    lines = (work / "exp" / "oskdft" / "metrics.jsonl").read_text().splitlines()
    eers = [r["valid_eer"] for r in map(json.loads, lines) if r["kind"] == "epoch"]
    meta = json.loads((work / "exp" / "oskdft" / "final" / "meta.json").read_text())
    # What a correct trainer does by construction. (Whether a later epoch beats the first is
    # not: the student starts from the pre-trained teacher's layers, and the small run's EERs
    # on its few validation trials moved by about a point between epochs, either way.)
    assert len(eers) == meta["epochs"] and meta["valid_eers"] == eers
    assert meta["best_epoch"] == eers.index(min(eers)) + 1 and meta["valid_eer"] == min(eers)
    # Learned: chance is 50%; the small run's epochs were at 13-15%.
    assert min(eers) < 0.3, eers


def test_second_run_changes_nothing(mini):
    work, _ = mini
    outputs = [p for p in (work / "exp").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in outputs}
    run = run_sh(work)
    assert run.returncode == 0, run.stderr[-2000:]
    # One skip each for stages 0, 1, 2 and the results table; one per system for stages 3-6.
    assert run.stderr.count(SKIPPING) == 4 + 4 * len(SYSTEMS), run.stderr[-4000:]
    # Naming fewer systems: theirs are done too.
    run = run_sh(work, "--stage", "3", "--stop-stage", "4", "--systems", "oskdft")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stderr.count(SKIPPING) == 2, run.stderr[-4000:]
    assert {p: p.stat().st_mtime_ns for p in outputs} == before


def test_stage_2_caches_the_teacher_for_a_cached_system(mini):
    work, _ = mini
    # The mini students cache the pre-trained teacher too: the last layer (oskdft_cached's,
    # which oskdft and kd_then_ft reuse) and layers 4/8/12 (distilhubert).
    caches = sorted(d.name for d in (work / "exp" / "teacher_cache").iterdir() if d.name != "log")
    assert len(caches) == 2 and all("data-teacher_L" in c for c in caches), caches
    log = (work / "exp" / "oskdft_cached" / "log" / "train.log").read_text()
    assert any(c in log for c in caches) and "data-teacher_L12_" in log
    assert (work / "exp" / "oskdft_cached" / "embeddings" / "test" / "xvector.scp").is_file()


def test_exported_model_verifies_a_pair(mini):
    work, _ = mini
    wavs = [
        line.split(maxsplit=1)[1].strip()
        for line in (work / "data" / "test" / "wav.scp").read_text().splitlines()[:2]
    ]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    run = subprocess.run(
        ["oskdft", "verify", str(work / "exp" / "oskdft" / "export" / "model.onnx"), *wavs],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "llr" in run.stdout.lower() and (
        "same" in run.stdout.lower() or "different" in run.stdout.lower()
    )


def table_systems(work: Path):
    rows = json.loads((work / "exp" / "results.json").read_text())["rows"]
    return list(dict.fromkeys(r["system"] for r in rows))


def test_scoring_fewer_systems_keeps_the_others_in_the_table(mini):
    work, _ = mini
    # Scored before run.conf's systems, oskdft_cached keeps its row, after theirs.
    assert table_systems(work) == SYSTEMS + ["oskdft_cached"]

    teacher_scores = work / "exp" / "teacher_ft" / "scores" / "metrics.json"
    before = teacher_scores.stat().st_mtime_ns
    run = run_sh(
        work, "--stage", "5", "--stop-stage", "5", "--systems", "oskdft", "--force", "true"
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Stage 5: scoring oskdft" in run.stderr and "scoring teacher_ft" not in run.stderr
    assert table_systems(work) == SYSTEMS + ["oskdft_cached"]
    assert teacher_scores.stat().st_mtime_ns == before

    # New embeddings of ft_only, not yet scored: its old scores leave the table.
    marker = work / "exp" / "ft_only" / ".stage4.done"
    original = marker.read_text()
    marker.write_text(original + "re-embedded\n")
    try:
        run = run_sh(work, "--stage", "5", "--stop-stage", "5", "--systems", "oskdft")
        assert run.returncode == 0, run.stderr[-4000:]
        assert (
            "not in the results table (not scored since their last embeddings): ft_only"
            in run.stderr
        )
        assert "ft_only" not in table_systems(work)
        assert "| ft_only |" not in (work / "exp" / "results.md").read_text()
    finally:
        marker.write_text(original)
    # Its marker back, its scores are current again: its rows return, the table as it was.
    run = run_sh(work, "--stage", "5", "--stop-stage", "5", "--systems", "oskdft")
    assert run.returncode == 0, run.stderr[-4000:]
    assert table_systems(work) == SYSTEMS + ["oskdft_cached"]
