"""run.sh's stage 3 decisions, without training: a job runner that trains nothing (it records
the system) stands in for utils/run_local.sh, over egs/mini's systems. What reruns: a change of
a system's config as loaded (its YAML or its `base:` chain), or a retrained teacher; what does
not: a comment edit, a rerun naming fewer systems. Options' paths are relative to where run.sh
is started."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = ["teacher_ft", "oskdft", "ft_only", "kd_then_ft", "distilhubert"]

# Stands in for the job runner: run.sh calls it as `RUNNER --gpus G --num-nodes N LOG train...`,
# in the working directory, with the experiment directory last.
RUNNER = """#!/usr/bin/env bash
echo "${!#}" >> runs.txt
echo "$*" >> commands.txt
"""


@pytest.fixture
def work(tmp_path):
    """tmp_path/work, with stage 1 done (by hand), and the runner at tmp_path/runner.sh."""
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / ".stage1.done").write_text("hash: by hand\n")
    runner = tmp_path / "runner.sh"
    runner.write_text(RUNNER)
    runner.chmod(0o755)
    return tmp_path / "work"


def stage3(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``run.sh --dir work --stage 3 --stop-stage 3 args...``, started in work's parent with
    relative paths."""
    command = [
        "bash",
        str(REPO / "run.sh"),
        "--dir",
        "work",
        "--stage",
        "3",
        "--stop-stage",
        "3",
        "--cmd",
        str(work.parent / "runner.sh"),
        *args,
    ]
    result = subprocess.run(command, cwd=work.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def trained(work: Path):
    """The systems the runner was asked to train, in order, since the last call."""
    runs = work / "runs.txt"
    names = [line.removeprefix("exp/") for line in runs.read_text().splitlines()]
    runs.unlink()
    return names


def test_fewer_systems_skip_and_a_retrained_teacher_retrains_its_students(work):
    stage3(work)
    assert trained(work) == SYSTEMS
    assert all((work / "exp" / s / ".stage3.done").is_file() for s in SYSTEMS)
    oskdft = [
        c for c in (work / "commands.txt").read_text().splitlines() if c.endswith(" exp/oskdft")
    ][0]
    assert " --inputs-hash data/.stage1.done=" in oskdft
    assert " exp/teacher_ft/.stage3.done=" in oskdft, "its teacher is teacher_ft's model"

    result = stage3(work, "--systems", "ft_only oskdft")
    assert not (work / "runs.txt").exists(), "done: nothing trains"
    assert "stage3 of exp/oskdft done with the same config and inputs: skipping" in result.stderr

    stage3(work, "--systems", "teacher_ft", "--force", "true")
    assert trained(work) == ["teacher_ft"]
    stage3(work, "--systems", "ft_only")
    assert trained(work) == ["ft_only"], "its teacher was retrained"
    stage3(work)
    assert trained(work) == ["oskdft", "kd_then_ft", "distilhubert"]


def test_an_edit_of_a_base_file_retrains(work):
    conf = work.parent / "conf"
    conf.mkdir()
    (conf / "base.yaml").write_text(f"base: {REPO}/egs/mini/conf/teacher_ft.yaml\n")
    (conf / "mine.yaml").write_text("base: base.yaml\ndescription: mine\n")
    stage3(work, "--train-config", "conf/mine.yaml")
    assert trained(work) == ["mine"]
    stage3(work, "--train-config", "conf/mine.yaml")
    assert not (work / "runs.txt").exists()
    with open(conf / "base.yaml", "a") as f:
        f.write("# a comment, and a key restated at its value\nsv:\n  margin: 0.2\n")
    stage3(work, "--train-config", "conf/mine.yaml")
    assert not (work / "runs.txt").exists(), "the config as loaded is unchanged"
    with open(conf / "base.yaml", "a") as f:
        f.write("optim:\n  epochs: 3\n")
    stage3(work, "--train-config", "conf/mine.yaml")
    assert trained(work) == ["mine"]


def test_a_student_before_its_teacher_names_the_missing_stage(work):
    command = [
        "bash",
        str(REPO / "run.sh"),
        "--dir",
        str(work),
        "--stage",
        "3",
        "--stop-stage",
        "3",
        "--systems",
        "oskdft",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "missing exp/teacher_ft/.stage3.done: stage 3 writes it" in result.stderr


def test_a_system_that_needs_a_teacher_and_names_none_stops_before_stage_0(work):
    (work.parent / "bad.yaml").write_text("ssl:\n  source: student\n")
    command = ["bash", str(REPO / "run.sh"), "--dir", "work", "--train-config", "bad.yaml"]
    result = subprocess.run(command, cwd=work.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert (
        f"ERROR: {(work.parent / 'bad.yaml').resolve()}: ssl.source=student and "
        "kd.loss=mse_last need a teacher, and teacher.path is not set"
    ) in result.stderr
    assert "Traceback" not in result.stderr, "bad input is one line, not a traceback"
    assert "Stage 0" not in result.stderr


def test_config_inputs_prints_digests_teacher_modes_and_teacher_markers():
    conf = REPO / "egs" / "mini" / "conf"
    command = [
        sys.executable,
        str(REPO / "local" / "config_inputs.py"),
        "--data-config",
        str(conf / "data.yaml"),
        *[f"{s}={conf / s}.yaml" for s in SYSTEMS],
    ]
    lines = [
        line.split()
        for line in subprocess.run(
            command, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    ]
    assert lines[0][0] == "data" and len(lines[0][1]) == 64
    systems = {fields[1]: fields[2:] for fields in lines[1:]}
    assert list(systems) == SYSTEMS
    assert systems["teacher_ft"][1:] == ["none", "-"]
    assert systems["oskdft"][2] == "exp/teacher_ft/.stage3.done"
    assert len({fields[0] for fields in systems.values()}) == len(SYSTEMS)
    overridden = subprocess.run(
        [*command, "--override", "teacher.mode=cached"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert overridden[0] == " ".join(lines[0])
    assert overridden[2].split()[3] == "cached" and overridden[2] != " ".join(lines[2])
