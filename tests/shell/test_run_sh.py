"""run.sh's stage 3 decisions, without training: a job runner that trains nothing (it records
the system) stands in for utils/run_local.sh, over egs/mini's systems. What reruns: a change of
a system's config as loaded (its YAML or its `base:` chain), or a retrained teacher; what does
not: a comment edit, a rerun naming fewer systems. Options' paths are relative to where run.sh
is started."""

import re
import subprocess
import sys
from pathlib import Path

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
