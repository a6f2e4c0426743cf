"""run.sh's stage 3 decisions, without training: a job runner that trains nothing (it records
the system) stands in for utils/run_local.sh, over egs/mini's systems. What reruns: a change of
a system's config as loaded (its YAML or its `base:` chain), or a retrained teacher; what does
not: a comment edit, a rerun naming fewer systems. Options' paths are relative to where run.sh
is started."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
SYSTEMS = re.search(r'^systems="([^"]+)"', (MINI / "run.conf").read_text(), re.M).group(1).split()
# egs/mini's students distil the pre-trained teacher at data/teacher; this one distils
# teacher_ft's trained model, so teacher_ft's stage 3 is one of its inputs.
STUDENT = f"base: {MINI}/conf/oskdft.yaml\nteacher:\n  path: exp/teacher_ft/final/ssl\n"


def write_student(work: Path) -> str:
    """Writes STUDENT beside ``work`` and returns its path relative to work's parent."""
    (work.parent / "student.yaml").write_text(STUDENT)
    return "student.yaml"


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
    """The systems the runner was asked to train since the last call, sorted: egs/mini trains
    two at a time (train_jobs), which start in either order."""
    runs = work / "runs.txt"
    names = sorted(line.removeprefix("exp/") for line in runs.read_text().splitlines())
    runs.unlink()
    return names


def test_fewer_systems_skip_and_a_retrained_teacher_retrains_its_students(work):
    stage3(work)
    assert trained(work) == sorted(SYSTEMS)
    assert all((work / "exp" / s / ".stage3.done").is_file() for s in SYSTEMS)
    oskdft = [
        c for c in (work / "commands.txt").read_text().splitlines() if c.endswith(" exp/oskdft")
    ][0]
    assert " --inputs-hash data/.stage1.done=" in oskdft
    assert "exp/teacher_ft/.stage3.done" not in oskdft, "its teacher is the pre-trained one"
    stage3(work, "--train-config", write_student(work))
    assert trained(work) == ["student"]
    student = (work / "commands.txt").read_text().splitlines()[-1]
    assert " exp/teacher_ft/.stage3.done=" in student, "its teacher is teacher_ft's model"

    result = stage3(work, "--systems", "ft_only oskdft")
    assert not (work / "runs.txt").exists(), "done: nothing trains"
    assert "stage3 of exp/oskdft done with the same config and inputs: skipping" in result.stderr

    stage3(work, "--systems", "teacher_ft", "--force", "true")
    assert trained(work) == ["teacher_ft"]
    stage3(work, "--train-config", "student.yaml")
    assert trained(work) == ["student"], "its teacher was retrained"
    stage3(work)
    assert not (work / "runs.txt").exists(), "the others' teacher is not teacher_ft"


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
        "--train-config",
        str(work.parent / write_student(work)),
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


def test_config_inputs_prints_digests_teacher_modes_and_teacher_markers(work):
    conf = MINI / "conf"
    command = [
        sys.executable,
        str(REPO / "local" / "config_inputs.py"),
        "--data-config",
        str(conf / "data.yaml"),
        *[f"{s}={conf / s}.yaml" for s in SYSTEMS],
        f"student={work.parent / write_student(work)}",
    ]

    def run(*override: str):
        """The data line's fields, and each system's fields by name."""
        out = subprocess.run(
            [*command, *override], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        return out[0].split(), {f[1]: f[2:] for f in map(str.split, out[1:])}

    data, systems = run()
    assert data[0] == "data" and len(data[1]) == 64
    assert list(systems) == [*SYSTEMS, "student"]
    assert systems["teacher_ft"][1:] == systems["ecapa_fbank"][1:] == ["none", "-"]
    assert systems["oskdft"][1:] == ["cached", "-"], "the pre-trained teacher is no system"
    assert systems["student"][2] == "exp/teacher_ft/.stage3.done"
    assert len({fields[0] for fields in systems.values()}) == len(systems)
    data_overridden, overridden = run("--override", "teacher.mode=online")
    assert data_overridden == data, "the overrides are the systems'"
    assert overridden["oskdft"][1] == "online" and overridden["oskdft"][0] != systems["oskdft"][0]
    assert overridden["teacher_ft"][1] == "none"


# A runner that takes a while: it logs its system's start and end, and fails for "ft_only"
# when FAIL is set.
SLOW_RUNNER = """#!/usr/bin/env bash
sys=${!#}; sys=${sys#exp/}
echo "start $sys" >> events.txt
sleep 0.5
echo "end $sys" >> events.txt
[ -n "${FAIL:-}" ] && [ "$sys" = ft_only ] && exit 3
exit 0
"""


def events(work: Path):
    """The most systems training at once, and the event index of each start and end."""
    running, most, start, end = set(), 0, {}, {}
    for i, line in enumerate((work / "events.txt").read_text().splitlines()):
        kind, sys = line.split()
        (running.add if kind == "start" else running.discard)(sys)
        (start if kind == "start" else end)[sys] = i
        most = max(most, len(running))
    return most, start, end


@pytest.fixture
def slow(work):
    (work.parent / "runner.sh").write_text(SLOW_RUNNER)
    return work


def test_systems_train_train_jobs_at_a_time(slow):
    stage3(slow, "--train-jobs", "2")
    most, start, end = events(slow)
    assert most == 2, "two at a time, never more"
    assert set(start) == set(end) == set(SYSTEMS)


def test_a_student_listed_with_its_teacher_starts_when_the_teacher_is_done(slow, tmp_path):
    # A recipe of its own (egs/ is the repository's): teacher_ft, a student of its trained
    # model right after it, then ft_only.
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("run.sh", "path.sh", "setup.py", "utils", "local", "oskdft", ".venv"):
        (repo / name).symlink_to(REPO / name)
    conf = repo / "egs" / "toy" / "conf"
    conf.mkdir(parents=True)
    (conf.parent / "run.conf").write_text(
        'prepare_opts=""\ntrain_set=train\neval_sets=""\naug_sets=""\n'
        'systems="teacher_ft student ft_only"\n'
    )
    for name in ("data", "teacher_ft", "ft_only"):
        (conf / f"{name}.yaml").write_text(f"base: {MINI}/conf/{name}.yaml\n")
    (conf / "student.yaml").write_text(STUDENT)
    command = ["bash", str(repo / "run.sh"), "--egs", "toy", "--dir", str(slow)]
    command += ["--stage", "3", "--stop-stage", "3", "--cmd", str(tmp_path / "runner.sh")]
    result = subprocess.run(
        [*command, "--train-jobs", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, start, end = events(slow)
    assert end["teacher_ft"] < start["student"], "the student waited for its teacher"
    assert start["ft_only"] > end["teacher_ft"], "the ones listed after it waited in line"


def test_a_failed_system_lets_the_running_ones_finish_and_starts_no_other(slow):
    command = ["bash", str(REPO / "run.sh"), "--dir", "work", "--stage", "3", "--stop-stage", "3"]
    command += ["--cmd", str(slow.parent / "runner.sh"), "--train-jobs", "2"]
    result = subprocess.run(
        command,
        cwd=slow.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FAIL": "1"},
    )
    assert result.returncode == 1
    assert "training ft_only failed" in result.stderr
    _, start, end = events(slow)
    assert set(start) == set(end), "whatever started, finished"
    # The system beside ft_only may start before its failure is seen; nothing after that.
    assert len(set(SYSTEMS[SYSTEMS.index("ft_only") + 1 :]) & set(start)) <= 1
    assert not (slow / "exp" / "ft_only" / ".stage3.done").exists()
    assert all((slow / "exp" / s / ".stage3.done").is_file() for s in start if s != "ft_only")


def test_a_failed_export_names_its_log_and_fails_the_stage(work):
    # Stage 6 of two systems whose stages 3 and 5 are marked done but left no model.
    for system in ("ft_only", "oskdft"):
        for n in (3, 5):
            (work / "exp" / system).mkdir(parents=True, exist_ok=True)
            (work / "exp" / system / f".stage{n}.done").write_text("hash: by hand\n")
    command = ["bash", str(REPO / "run.sh"), "--dir", str(work), "--stage", "6"]
    command += ["--systems", "ft_only oskdft", "--nj", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    for system in ("ft_only", "oskdft"):  # both ran: the first failure stops nothing running
        log = work / "exp" / "log" / system / "export.log"
        assert f"export of {system} failed: see {log}" in result.stderr
        assert "no trained model here" in log.read_text()
        assert not (work / "exp" / system / ".stage6.done").exists()
