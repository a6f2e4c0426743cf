"""run.sh --seeds: stages 2-5 once per seed in exp/seed<k>/ (a working directory linking the shared
data/), each system trained with train.seed=<k>; the results tables per seed and over seeds.
Training is stood in for by a runner that records what it was asked (as in test_run_sh.py);
stage 5 reads generated score files (tests/scoring/fake_scores.py)."""

import json
import subprocess
from pathlib import Path

from tests.scoring.fake_scores import make_trials, write_systems
from tests.shell.test_run_sh import REPO, trained

SYSTEMS = ["ft_only", "oskdft"]


def run_sh(work: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        "bash",
        str(REPO / "run.sh"),
        "--dir",
        "work",
        "--cmd",
        str(work.parent / "runner.sh"),
        *args,
    ]
    result = subprocess.run(command, cwd=work.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_each_seed_trains_every_system_in_its_own_directory(work):
    stage3 = ["--stage", "3", "--stop-stage", "3", "--systems", " ".join(SYSTEMS)]
    run_sh(work, *stage3, "--seeds", "1 2")
    assert not (work / "exp" / "oskdft").exists(), "nothing trains outside the seeds' dirs"
    for seed in (1, 2):
        seed_work = work / "exp" / f"seed{seed}"
        assert (seed_work / "data").is_symlink()
        assert (seed_work / "data").resolve() == (work / "data").resolve()
        assert trained(seed_work) == sorted(SYSTEMS)
        commands = (seed_work / "commands.txt").read_text().splitlines()
        oskdft = next(c for c in commands if c.endswith(" exp/oskdft"))
        assert f" --override train.seed={seed} " in oskdft
        assert " --inputs-hash data/.stage1.done=" in oskdft, "the shared windows, via the link"
        assert (seed_work / "exp" / "oskdft" / ".stage3.done").is_file()

    result = run_sh(work, *stage3, "--seeds", "1 2", "--override", "optim.epochs=2")
    assert trained(work / "exp" / "seed1") == sorted(SYSTEMS), "every seed retrains"
    commands = (work / "exp" / "seed2" / "commands.txt").read_text()
    assert "--override optim.epochs=2 train.seed=2 " in commands
    run_sh(work, *stage3, "--seeds", "1 2", "--override", "optim.epochs=2")
    assert not (work / "exp" / "seed1" / "runs.txt").exists(), "done: nothing trains"
    assert "seed 2: stages 2-5" in result.stderr


def stage_hash(directory: Path, *args: str) -> str:
    script = f'. "{REPO}/utils/done.sh"; stage_hash "$@"'
    return subprocess.run(
        ["bash", "-c", script, "stage_hash", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_stage_5_writes_a_table_per_seed_and_one_over_seeds(work):
    trials = make_trials(work / "data")
    systems = ["oskdft", "worse"]
    for seed in (1, 2):
        seed_exp = work / "exp" / f"seed{seed}" / "exp"
        write_systems(seed_exp, trials, systems, seed=seed)
        for system in systems:  # embedded and scored, as stages 4 and 5 mark it
            (seed_exp / system / ".stage4.done").write_text(f"hash: embedded {seed}\n")
            h = stage_hash(seed_exp.parent, f"exp/{system}/.stage4.done", "--", "test")
            (seed_exp / system / ".stage5.done").write_text(f"hash: {h}\n")
    args = [
        "--stage",
        "5",
        "--stop-stage",
        "5",
        "--seeds",
        "1 2",
        "--systems",
        "oskdft worse",
        "--bootstrap",
        "40",
    ]
    result = run_sh(work, *args)
    for seed in (1, 2):
        table = json.loads((work / "exp" / f"seed{seed}" / "exp" / "results.json").read_text())
        assert table["bootstrap"]["resamples"] == 40
        assert [r["system"] for r in table["rows"]] == ["oskdft", "oskdft", "worse", "worse"]
    seeds = json.loads((work / "exp" / "results_seeds.json").read_text())
    assert seeds["seeds"] == [1, 2]
    assert {(r["system"], r["backend"]): r["seeds"] for r in seeds["rows"]} == {
        (s, b): [1, 2] for s in systems for b in ("cosine", "plda")
    }
    assert "# Results over seeds" in result.stdout

    before = (work / "exp" / "results_seeds.md").stat().st_mtime_ns
    result = run_sh(work, *args)
    assert "results_seeds of exp done with the same config and inputs: skipping" in result.stderr
    assert (work / "exp" / "results_seeds.md").stat().st_mtime_ns == before
    run_sh(work, *args[:-1], "30")
    assert (
        json.loads((work / "exp" / "seed1" / "exp" / "results.json").read_text())["bootstrap"][
            "resamples"
        ]
        == 30
    ), "another resample count: the tables are remade"
