from pathlib import Path

import pytest
import torch
import yaml

from oskdft.cli.common import run_script
from oskdft.cli.main import get_parser, main
from oskdft.config import load_config
from oskdft.models.teacher import build_ssl_from_arch
from oskdft.training.schedules import format_schedule
from oskdft.utils.errors import InputError
from tests.models.tiny import tiny_arch

REPO = Path(__file__).resolve().parents[2]

SMALL_BACKEND = {"channels": 16, "embed_dim": 8}


def write_config(path, **sections):
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def test_info_counts_a_scratch_system(tmp_path, capsys):
    arch = tiny_arch(num_hidden_layers=2)
    config = write_config(
        tmp_path / "tiny.yaml",
        ssl={"source": "scratch", "arch": arch, "adapters": False},
        backend=SMALL_BACKEND,
    )
    assert main(["info", config, "--num-speakers", "5"]) == 0
    out = capsys.readouterr().out.split("\n\n")[0]  # the counts; the schedule follows
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    ssl = sum(p.numel() for p in build_ssl_from_arch(arch).parameters())
    # The encoder minus its SpecAugment embedding, which the model drops.
    assert int(rows["ssl"][0].replace(",", "")) == ssl - 32
    assert rows["adapters"] == ["0"] and rows["aam_head"] == ["40"]
    assert "system (tiny)" in out.splitlines()[0]


def test_info_compares_a_student_with_its_teacher(tmp_path, capsys):
    torch.manual_seed(0)
    build_ssl_from_arch(tiny_arch()).save_pretrained(tmp_path / "exp" / "teacher")
    config = write_config(
        tmp_path / "oskdft.yaml",
        teacher={"path": "exp/teacher"},
        ssl={"num_layers": 1},
        backend=SMALL_BACKEND,
    )
    assert main(["info", config, "--dir", str(tmp_path), "--override", "ssl.num_layers=2"]) == 0
    out = capsys.readouterr().out.split("\n\n")[0]
    assert "teacher + same back end" in out.splitlines()[0]
    assert "smaller" in out.splitlines()[-1]


def test_info_prints_the_paper_configs_learning_rate_schedule(tmp_path, capsys):
    build_ssl_from_arch(tiny_arch()).save_pretrained(tmp_path / "teacher")
    paper = REPO / "egs" / "voxceleb" / "conf" / "oskdft_paper.yaml"
    assert (
        main(
            [
                "info",
                str(paper),
                "--override",
                f"teacher.path={tmp_path / 'teacher'}",
                "ssl.num_layers=2",
            ]
        )
        == 0
    )
    schedule = capsys.readouterr().out.split("\n\n")[1].strip()
    assert (
        schedule.splitlines()[0].split()[2:]
        == "epoch 1 epoch 9 epoch 10 epoch 50 epoch 100".split()
    )
    assert [line.split()[0] for line in schedule.splitlines()[1:]] == ["backend", "adapters", "ssl"]
    # The values are the schedule's (tests/training/test_schedules.py checks them against the
    # original's formulas); here, that info prints the paper config's, not another's.
    assert schedule == format_schedule(load_config(paper).optim)
    assert "8.86e-05" in schedule.splitlines()[3]  # the shared encoder's peak, epoch 9


def test_info_reports_a_missing_teacher(tmp_path, capsys):
    config = write_config(tmp_path / "oskdft.yaml", teacher={"path": "exp/missing/ssl"})
    assert main(["info", config, "--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "exp/missing/ssl: no such model directory" in err
    # The learning rates need no model: they are shown all the same.
    assert out.splitlines()[0].startswith("learning rate")
    assert [line.split()[0] for line in out.strip().splitlines()[1:]] == [
        "backend",
        "adapters",
        "ssl",
    ]


def test_info_schedule_lists_only_the_groups_a_system_trains(capsys):
    fbank = REPO / "egs" / "voxceleb" / "conf" / "ecapa_fbank.yaml"
    assert main(["info", str(fbank)]) == 0
    schedule = capsys.readouterr().out.split("\n\n")[1].strip().splitlines()
    assert [line.split()[0] for line in schedule[1:]] == ["backend"]


def test_subcommands_are_required():
    with pytest.raises(SystemExit):
        get_parser().parse_args([])
    assert get_parser().parse_args(["info", "x.yaml"]).func.__name__ == "run_info"


def test_a_stage_script_ends_bad_input_with_one_line_and_keeps_tracebacks_of_bugs():
    def bad_input():
        raise InputError("conf/x.yaml", "unknown config key 'a'", line=3)

    with pytest.raises(SystemExit) as exit_:
        run_script(bad_input)
    assert exit_.value.code == "ERROR: conf/x.yaml:3: unknown config key 'a'"

    def bug():
        raise KeyError("a")

    with pytest.raises(KeyError):
        run_script(bug)
