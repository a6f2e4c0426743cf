"""Stage 4 as run.sh runs it: N extraction jobs, then the merge, from the recipe directory."""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet

from oskdft.embedding.extract import embed_cuts, extract_embeddings_job
from oskdft.embedding.merge import merge_embeddings
from oskdft.layout import manifest_path
from oskdft.model_dir import load_final, save_final
from oskdft.scoring.embeddings import load_embeddings
from oskdft.utils.errors import InputError
from oskdft.utils.kaldi_io import read_scp
from tests.embedding.tiny_system import scratch_config, tiny_model, write_set

REPO = Path(__file__).resolve().parents[2]
SETS = {
    "test": [0.5, 1.2, 2.8, 1.9, 0.8, 2.2, 1.4, 3.0, 1.1, 0.6, 2.5, 1.7],
    "valid": [1.3, 0.7, 2.1, 1.6, 0.9, 2.4],
    "backend": [2.0, 1.0, 1.5, 0.4, 2.6, 1.8],
}
NUM_JOBS = 2
FULL_ONLY = "backend"  # as run.sh: the back ends are fitted on whole utterances


def script_main(name: str):
    return runpy.run_path(str(REPO / "local" / name), run_name="oskdft_test")["main"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe working directory with data/manifests for three sets, exp/sys/final, and a
    second system of other weights, exp/other/final."""
    root = tmp_path_factory.mktemp("recipe")
    for seed, (name, seconds) in enumerate(SETS.items()):
        write_set(root, name, seconds, seed=seed)
    cfg = scratch_config(eval={"crop_seconds": 1.5, "num_crops": 3, "batch_seconds": 6.0})
    save_final(root / "exp" / "sys" / "final", tiny_model(cfg), cfg, {})
    save_final(root / "exp" / "other" / "final", tiny_model(cfg, seed=1), cfg, {})
    return root


@pytest.fixture(scope="module")
def stage_4(recipe):
    """run.sh's two commands, with the same relative paths, from the recipe directory."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(recipe)
        sets = " ".join(SETS)
        for job in range(1, NUM_JOBS + 1):
            script_main("extract_embeddings.py")(
                [
                    "--sets",
                    sets,
                    "--full-only-sets",
                    FULL_ONLY,
                    "--job",
                    str(job),
                    "--num-jobs",
                    str(NUM_JOBS),
                    "--device",
                    "cpu",
                    "data",
                    "exp",
                    "sys",
                    "other",
                ]
            )
        script_main("merge_embeddings.py")(
            [
                "--sets",
                sets,
                "--full-only-sets",
                FULL_ONLY,
                "--num-jobs",
                str(NUM_JOBS),
                "data",
                "exp",
                "sys",
                "other",
            ]
        )
    return recipe / "exp" / "sys" / "embeddings"


@pytest.fixture
def copied(stage_4, recipe, tmp_path, monkeypatch):
    """A copy of stage 4's output to change, in the recipe directory."""
    monkeypatch.chdir(recipe)
    return Path(shutil.copytree(stage_4, tmp_path / "exp" / "sys" / "embeddings"))


@pytest.mark.parametrize("system", ["sys", "other"])
def test_stage_4_embeds_every_utterance_of_every_set_once(recipe, stage_4, monkeypatch, system):
    # Each job did its share for both systems, each with its own model.
    out = recipe / "exp" / system / "embeddings"
    monkeypatch.chdir(REPO)  # the tables must read the same from anywhere
    model, _, _ = load_final(recipe / "exp" / system / "final")
    for name in SETS:
        cuts = CutSet.from_file(manifest_path(recipe / "data", name, "cuts"))
        table = load_embeddings(out / name, crops=name != FULL_ONLY)
        assert table.keys == sorted(cut.id for cut in cuts)
        assert table.vectors.shape == (len(cuts), 8)
        for job in range(1, NUM_JOBS + 1):  # both jobs did work
            assert (out / name / f"xvector.{job}.ark").stat().st_size > 0
        expected = embed_cuts(model, cuts, "cpu")
        np.testing.assert_allclose(
            table.vectors, np.stack([expected[k] for k in table.keys]), atol=1e-4
        )
    assert not list((out / FULL_ONLY).glob("xvector_crops*"))
    crops_scp = out / "test" / "xvector_crops.scp"
    assert {m.shape for m in read_scp(crops_scp).values()} == {(3, 8)}  # eval.num_crops of 3
    ark = crops_scp.read_text().split()[1].rsplit(":", 1)[0]
    assert Path(ark).is_absolute()


def test_a_rerun_redoes_only_missing_or_stale_work(recipe, copied):
    out = copied
    (out / "valid" / "xvector_crops.2.scp").unlink()  # job 2 died while writing valid
    args = dict(
        final_dir="exp/sys/final",
        data_dir="data",
        embeddings_dir=out,
        sets=list(SETS),
        num_jobs=NUM_JOBS,
        device="cpu",
        progress=False,
        full_only_sets=[FULL_ONLY],
    )
    assert extract_embeddings_job(job=1, **args) == []
    untouched = (out / "test" / "xvector.2.ark").stat().st_mtime_ns
    assert extract_embeddings_job(job=2, **args) == ["valid"]
    assert (out / "test" / "xvector.2.ark").stat().st_mtime_ns == untouched
    merge_embeddings("data", out, list(SETS), NUM_JOBS, [FULL_ONLY])

    # A retrained model (final/ rewritten) makes every table stale.
    final = recipe / "exp" / "sys" / "final"
    model, cfg, meta = load_final(final)
    save_final(final, model, cfg, meta)
    assert extract_embeddings_job(job=1, **args) == list(SETS)


@pytest.fixture
def merged(copied):
    """The jobs' output without the merged tables."""
    for name in SETS:
        for table in ("xvector", "xvector_crops"):
            (copied / name / f"{table}.scp").unlink(missing_ok=name == FULL_ONLY)
    return copied


def test_merge_names_a_job_that_did_not_finish(merged):
    (merged / "test" / "xvector.2.scp").unlink()
    with pytest.raises(InputError, match=r"job 2: xvector\.2\.scp missing \(\d+ utterances\)"):
        merge_embeddings("data", merged, ["test"], NUM_JOBS)
    assert not (merged / "test" / "xvector.scp").exists()
    assert not (merged / "test" / "xvector_crops.scp").exists()  # nothing half-merged


def test_merge_detects_lost_utterances_and_a_wrong_job_count(merged):
    scp = merged / "valid" / "xvector_crops.1.scp"
    lines = scp.read_text().splitlines(keepends=True)
    lost = lines[0].split()[0]
    scp.write_text("".join(lines[1:]))
    with pytest.raises(
        InputError,
        match=rf"job 1: xvector_crops\.1\.scp lacks 1 of its "
        rf"{len(lines)} utterances \(e\.g\. '{lost}'\)",
    ):
        merge_embeddings("data", merged, ["valid"], NUM_JOBS)
    with pytest.raises(InputError, match=r"job 3: xvector\.3\.scp missing"):
        merge_embeddings("data", merged, ["backend"], 3)
    assert merge_embeddings("data", merged, ["test", "backend"], NUM_JOBS, [FULL_ONLY]) == {
        "test": len(SETS["test"]),
        "backend": len(SETS["backend"]),
    }


def test_a_full_only_set_has_no_crops_and_an_old_crops_table_goes(merged):
    # Asked for crops, the merge finds none: the jobs were told not to make them.
    with pytest.raises(InputError, match=r"job 1: xvector_crops\.1\.scp missing"):
        merge_embeddings("data", merged, [FULL_ONLY], NUM_JOBS)
    stale = merged / FULL_ONLY / "xvector_crops.scp"
    stale.write_text("an earlier run's table\n")
    merge_embeddings("data", merged, [FULL_ONLY], NUM_JOBS, [FULL_ONLY])
    assert (merged / FULL_ONLY / "xvector.scp").is_file() and not stale.exists()


def test_merge_runs_without_torch(merged):
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['merge_embeddings.py', '--sets', 'test', '--num-jobs', '{NUM_JOBS}', "
        f"'data', {str(merged.parents[1])!r}, 'sys']\n"
        f"runpy.run_path({str(REPO / 'local' / 'merge_embeddings.py')!r}, run_name='__main__')\n"
        "assert 'torch' not in sys.modules, 'merge imported torch'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=Path.cwd(), env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert (merged / "test" / "xvector.scp").read_text().count("\n") == len(SETS["test"])


def test_a_job_without_a_trained_model_says_to_run_stage_3(recipe, tmp_path):
    with pytest.raises(InputError, match="final: no trained model here .*stage 3"):
        extract_embeddings_job(
            recipe / "exp" / "nothing" / "final",
            recipe / "data",
            tmp_path,
            ["test"],
            job=1,
            num_jobs=1,
        )
    (tmp_path / "final").mkdir()
    with pytest.raises(InputError, match="config.yaml: missing .*stage 3"):
        extract_embeddings_job(
            tmp_path / "final", recipe / "data", tmp_path, ["test"], job=1, num_jobs=1
        )


def test_a_set_without_a_manifest_names_it(recipe, tmp_path):
    with pytest.raises(InputError, match=r"cohort_cuts\.jsonl\.gz: cut manifest not found"):
        extract_embeddings_job(
            recipe / "exp" / "sys" / "final",
            recipe / "data",
            tmp_path,
            ["cohort"],
            job=1,
            num_jobs=1,
        )
