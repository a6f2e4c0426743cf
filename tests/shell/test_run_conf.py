"""run.sh's options against egs/<egs>/run.conf, and what stage 0's marker covers, in a copy of
the repository's layout (run.sh, utils/, local/ and .venv linked; oskdft/ and egs/ its own, so
that the test can edit them)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RUN_CONF = """prepare_opts="--utts 2"
train_set=train
eval_sets=""
aug_sets=""
systems="a b"
stage=7  # options too, which the command line overrides
stop_stage=7
"""

# Writes a tiny training set with the library's Kaldi-dir writer: stage 0's corpus code.
PREPARE = """import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from oskdft.data.kaldi_dir import write_data_dir

utts, data = int(sys.argv[2]), Path(sys.argv[3])
wav_scp, utt2spk = {}, {}
for spk in ("s1", "s2"):
    for i in range(utts):
        wav = data.parent / "wav" / f"{spk}-{i}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, np.random.default_rng(i).standard_normal(16000) * 0.1, 16000)
        wav_scp[f"{spk}-{i}"], utt2spk[f"{spk}-{i}"] = str(wav), spk
write_data_dir(data / "train", wav_scp, utt2spk)
"""


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("run.sh", "path.sh", "setup.py", "utils", "local", ".venv"):
        (root / name).symlink_to(REPO / name)
    shutil.copytree(REPO / "oskdft", root / "oskdft", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "egs" / "toy").mkdir(parents=True)
    (root / "egs" / "toy" / "run.conf").write_text(RUN_CONF)
    (root / "egs" / "toy" / "prepare.py").write_text(PREPARE)
    return root


def run_sh(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        ["bash", str(repo / "run.sh"), "--egs", "toy", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def plan(result: subprocess.CompletedProcess) -> str:
    return re.search(r"stages (.*)", result.stderr).group(1)


def test_the_command_line_wins_over_a_config_file_which_wins_over_run_conf(repo):
    assert plan(run_sh(repo)) == "7..7, systems: a b", "run.conf's values"
    (repo / "cmd.conf").write_text("stop_stage=8\nsystems=c\n")
    assert plan(run_sh(repo, "--config", "cmd.conf")) == "7..8, systems: c"
    result = run_sh(repo, "--config", "cmd.conf", "--stop-stage", "9", "--systems", "d")
    assert plan(result) == "7..9, systems: d"


def test_every_run_conf_variable_is_an_option_and_the_command_line_wins(repo):
    stage0 = ("--stage", "0", "--stop-stage", "0")
    run_sh(repo, "--prepare-opts", "--utts 3", "--systems", "c", *stage0)
    wav_scp = repo / "egs" / "toy" / "data" / "train" / "wav.scp"
    assert len(wav_scp.read_text().splitlines()) == 2 * 3, "prepare.py got the command line's"
    result = subprocess.run(
        ["bash", str(repo / "run.sh"), "--egs", "toy", "--no-such-variable", "1", *stage0],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "unknown option --no-such-variable" in result.stderr


def test_an_edit_of_the_library_code_that_writes_the_corpus_reruns_stage_0(repo):
    stage0 = ("--stage", "0", "--stop-stage", "0")
    run_sh(repo, *stage0)
    assert (repo / "egs" / "toy" / "data" / "manifests" / "train_cuts.jsonl.gz").is_file()
    skipped = "stage0 of data done with the same config and inputs: skipping"
    # Not corpus code: argument parsing and I/O helpers (oskdft.utils), unrelated modules.
    for unrelated in ("utils/io.py", "scoring/report.py"):
        with open(repo / "oskdft" / unrelated, "a") as f:
            f.write("# an edit\n")
        assert skipped in run_sh(repo, *stage0).stderr, unrelated
    # What prepare.py imports, and what that imports in turn.
    for corpus_code in ("data/kaldi_dir.py", "data/audio.py"):
        with open(repo / "oskdft" / corpus_code, "a") as f:
            f.write("# an edit\n")
        result = run_sh(repo, *stage0)
        assert "stage0 of data: inputs changed" in result.stderr, corpus_code
        assert skipped in run_sh(repo, *stage0).stderr
