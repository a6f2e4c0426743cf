"""Stage 5 end to end on random speaker-structured embeddings written with kaldi_io."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from oskdft.config import EvalConfig, SystemConfig, save_config
from oskdft.scoring.backends import load_backend
from oskdft.scoring.calibration import load_calibration
from oskdft.scoring.embeddings import load_embeddings
from oskdft.scoring.pipeline import score_system
from oskdft.scoring.report import make_results
from oskdft.utils.done import stage_hash
from oskdft.utils.errors import InputError
from oskdft.utils.kaldi_io import write_ark_scp

ROOT = Path(__file__).resolve().parents[2]
DIM = 8
# Speakers differ within a 4-d subspace (what LDA to 4 dimensions must find); noise is isotropic.
SPEAKER_BASIS = np.random.default_rng(99).normal(size=(4, DIM))


def write_set(rng, data_dir, emb_dir, name, num_speakers, utts, trials=None, durations=False):
    """Embeddings (full + 5 crops) of ``num_speakers`` x ``utts`` utterances, utt2spk and the
    trial lists ``trials`` (list name -> fraction of all pairs kept)."""
    keys, full, crops, utt2spk = [], {}, {}, {}
    for s in range(num_speakers):
        centre = 3 * rng.normal(size=4) @ SPEAKER_BASIS + 1.0
        for u in range(utts):
            key = f"{name}{s:02d}-{u}"
            keys.append(key)
            utt2spk[key] = f"{name}{s:02d}"
            full[key] = (centre + rng.normal(size=DIM)).astype(np.float32)
            crops[key] = (full[key] + rng.normal(size=(5, DIM))).astype(np.float32)
    write_ark_scp(emb_dir / name / "xvector.ark", emb_dir / name / "xvector.scp", full.items())
    write_ark_scp(
        emb_dir / name / "xvector_crops.ark", emb_dir / name / "xvector_crops.scp", crops.items()
    )
    (data_dir / name).mkdir(parents=True, exist_ok=True)
    (data_dir / name / "utt2spk").write_text("".join(f"{k} {v}\n" for k, v in utt2spk.items()))
    if durations:
        (data_dir / name / "utt2dur").write_text(
            "".join(f"{k} {rng.uniform(2, 20):.2f}\n" for k in keys)
        )
    for list_name, keep in (trials or {}).items():
        lines = [
            f"{a} {b} {'target' if utt2spk[a] == utt2spk[b] else 'nontarget'}\n"
            for i, a in enumerate(keys)
            for b in keys[i + 1 :]
            if rng.random() < keep
        ]
        (data_dir / name / f"trials_{list_name}").write_text("".join(lines))


def make_recipe(root, system="sys", durations=False, **eval_fields):
    rng = np.random.default_rng(0)
    data_dir, system_dir = root / "data", root / "exp" / system
    emb_dir = system_dir / "embeddings"
    write_set(rng, data_dir, emb_dir, "backend", 24, 5)
    write_set(rng, data_dir, emb_dir, "valid", 8, 4, {"valid": 1.0}, durations)
    write_set(rng, data_dir, emb_dir, "test", 10, 4, {"a": 1.0, "b": 0.5}, durations)
    eval_fields = {"lda_dim": 4, "plda_iters": 3, "asnorm_top_n": 6, **eval_fields}
    cfg = SystemConfig(eval=EvalConfig(**eval_fields))
    save_config(cfg, system_dir / "config.yaml")
    return data_dir, system_dir


def test_scores_every_list_and_backend(tmp_path):
    data_dir, system_dir = make_recipe(tmp_path, durations=True, calibration_durations=True)
    metrics = score_system(data_dir, system_dir, ["test"])
    out = system_dir / "scores"
    backends = ["cosine", "cosine_mean", "plda", "asnorm", "fused"]
    assert metrics["backends"] == backends
    for name in ("a", "b"):
        assert (out / f"{name}.det.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"{name}.hist.png").read_bytes()[:4] == b"\x89PNG"
        num_trials = len((data_dir / "test" / f"trials_{name}").read_text().splitlines())
        for backend in backends:
            lines = (out / f"{name}.{backend}.score").read_text().splitlines()
            assert len(lines) == num_trials
            result = metrics["trial_lists"][name]["results"][backend]
            assert result["num_trials"] == num_trials
            assert result["eer"] < 0.2, (name, backend)  # chance is 0.5
            assert result["min_cllr"] <= result["cllr"] < 0.9  # uninformative is 1
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert sorted(p.name for p in out.glob("*.npz")) == [
        "asnorm.npz",
        "cosine_mean.npz",
        "plda.npz",
    ]

    # The cosine score file holds the cosines of the named utterances.
    test = load_embeddings(system_dir / "embeddings" / "test")
    for line in (out / "a.cosine.score").read_text().splitlines()[:5]:
        a, b, score, _ = line.split()
        x, y = test.vectors[test.index[a]], test.vectors[test.index[b]]
        assert float(score) == pytest.approx(
            x @ y / np.linalg.norm(x) / np.linalg.norm(y), abs=1e-5
        )
    # The saved PLDA model reproduces its score file.
    trials = [line.split() for line in (out / "b.plda.score").read_text().splitlines()]
    enrol = np.array([test.index[t[0]] for t in trials])
    tests = np.array([test.index[t[1]] for t in trials])
    rescored = load_backend("plda", out / "plda.npz").score(test, enrol, tests)
    np.testing.assert_allclose(rescored, [float(t[2]) for t in trials], atol=2e-6)

    # Calibration: fitted on valid, with duration terms; default = best valid EER.
    valid_eer = {b: r["eer"] for b, r in metrics["valid"]["results"].items()}
    assert metrics["deploy_backend"] == min(valid_eer, key=valid_eer.get)
    name, calibration = load_calibration(out / "calibration.json")
    assert name == metrics["deploy_backend"]
    assert len(calibration.quality_weights) == 2
    assert set(calibration.thresholds) == {"eer", "p_target=0.01"}


def test_failed_run_keeps_earlier_scores(tmp_path):
    data_dir, system_dir = make_recipe(tmp_path, backends=["cosine"])
    score_system(data_dir, system_dir, ["test"])
    before = (system_dir / "scores" / "metrics.json").read_bytes()
    with open(data_dir / "test" / "trials_b", "a") as f:
        f.write("test00-0 nobody-1 nontarget\n")
    with pytest.raises(
        InputError,
        match=r"trials_b:\d+: 1 utterance\(s\) have no embedding.*"
        r"nobody-1",
    ):
        score_system(data_dir, system_dir, ["test"])
    assert (system_dir / "scores" / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in system_dir.iterdir()) == ["config.yaml", "embeddings", "scores"]


def test_lists_of_a_set_score_together_as_each_alone(tmp_path):
    """A set's lists are scored in one back-end call; list a scores as if it were alone."""
    data_dir, system_dir = make_recipe(tmp_path, durations=True, calibration_durations=True)
    together = score_system(data_dir, system_dir, ["test"])
    scores = {path.name: path.read_text() for path in (system_dir / "scores").glob("a.*.score")}
    (data_dir / "test" / "trials_b").unlink()
    alone = score_system(data_dir, system_dir, ["test"])
    assert list(alone["trial_lists"]) == ["a"]
    for name, text in scores.items():
        expected = [line.split() for line in text.splitlines()]
        got = [line.split() for line in (system_dir / "scores" / name).read_text().splitlines()]
        assert [row[:2] + row[3:] for row in got] == [row[:2] + row[3:] for row in expected]
        np.testing.assert_allclose(
            [float(row[2]) for row in got], [float(row[2]) for row in expected], rtol=0, atol=2e-6
        )
    for backend, result in alone["trial_lists"]["a"]["results"].items():
        assert result == pytest.approx(together["trial_lists"]["a"]["results"][backend], abs=1e-5)


def test_untrained_backends_need_no_backend_set_and_config_errors(tmp_path):
    data_dir, system_dir = make_recipe(tmp_path, backends=["cosine", "fused"])
    score_system(data_dir, system_dir, ["test"], backend_set="missing")
    save_config(
        SystemConfig(eval=EvalConfig(backends=["cosine", "lda"])), system_dir / "config.yaml"
    )
    # The saved config is checked again when stage 5 loads it, naming its file and line.
    with pytest.raises(
        InputError,
        match=r"config.yaml:\d+: eval.backends must be one of "
        r"cosine, .*got 'lda'",
    ):
        score_system(data_dir, system_dir, ["test"])
    save_config(
        SystemConfig(eval=EvalConfig(backends=["cosine"], deploy_backend="plda")),
        system_dir / "config.yaml",
    )
    with pytest.raises(InputError, match="eval.deploy_backend 'plda' is not one of"):
        score_system(data_dir, system_dir, ["test"])


def test_results_table(tmp_path, capsys):
    exp = tmp_path / "exp"
    for system in ("teacher_ft", "oskdft"):
        make_recipe(tmp_path, system, backends=["cosine", "plda"])
        score_system(tmp_path / "data", exp / system, ["test"])
    (exp / "oskdft" / "final").mkdir()
    (exp / "oskdft" / "final" / "meta.json").write_text(
        json.dumps(
            {
                "params": {"ssl": 63_500_000, "adapters": 1, "backend": 2, "total": 70_100_000},
                "macs_per_second": {"ssl": 21_500_000_000, "total": 23_040_000_000},
            }
        )
    )
    for system in ("teacher_ft", "oskdft", "ft_only"):  # stages 4 and 5 as run.sh marks them
        (exp / system).mkdir(exist_ok=True)
        (exp / system / ".stage4.done").write_text(f"hash: embedded {system}\n")
        scored = stage_hash([exp / system / ".stage4.done"], ["test"])
        (exp / system / ".stage5.done").write_text(f"hash: {scored}\n")
    (exp / "ft_only" / ".stage4.done").write_text("hash: embedded again, not scored since\n")
    script = runpy.run_path(str(ROOT / "local" / "make_results.py"))
    script["main"](
        [
            "--order",
            "teacher_ft",
            "--eval-sets",
            "test",
            "--data-dir",
            str(tmp_path / "data"),
            "--resamples",
            "50",
            str(exp),
        ]
    )
    markdown = capsys.readouterr().out
    assert markdown == (exp / "results.md").read_text()
    results = json.loads((exp / "results.json").read_text())
    assert results["bootstrap"]["resamples"] == 50 and results["bootstrap"]["reference"] == "oskdft"
    rows = results["rows"]
    assert [(r["trial_list"], r["system"], r["backend"]) for r in rows] == [
        (t, s, b) for t in "ab" for s in ("teacher_ft", "oskdft") for b in ("cosine", "plda")
    ]
    for r in rows:
        assert r["eer_ci"][0] <= r["eer"] <= r["eer_ci"][1], r
        assert r["min_dcf_0.01_ci"][0] <= r["min_dcf_0.01_ci"][1]
    assert "50 resamples of a bootstrap over speakers" in markdown
    table_a = markdown.split("## test: a")[1].split("## test: b")[0]
    lines = [line for line in table_a.splitlines() if line.startswith("| ")][1:]
    assert lines[0].startswith("| teacher_ft | cosine |") and lines[0].endswith("| - | - | - | - |")
    teacher = rows[0]
    low, high = teacher["eer_diff_ci"]
    assert lines[0].split(" | ")[3] == (
        f"{100 * teacher['eer_diff']:+.2f} [{100 * low:+.2f}, "
        f"{100 * high:+.2f}]" + (" *" if low > 0 or high < 0 else "")
    )
    assert lines[2].startswith("| oskdft | cosine |") and lines[2].split(" | ")[3] == "-"
    assert lines[2].endswith("| 63.5M | 70.1M | 21.5 | 23 |")
    best = min(r["eer"] for r in rows if r["trial_list"] == "a")
    assert table_a.count(f"**{100 * best:.2f}**") >= 1
    with pytest.raises(InputError, match="metrics.json: not found"):
        make_results(exp, tmp_path / "data", ["teacher_ft", "ft_only"], ["test"])
