"""Stage 2: the teacher cache (keys, sharded writing, resuming, merging, reading back)."""

import dataclasses
import importlib.util
import logging
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lhotse import CutSet
from torch.utils.data import DataLoader

from oskdft.cache import cache_spec, cache_teacher_job, merge_teacher_cache, open_teacher_cache
from oskdft.cache.teacher_cache import merge_shards, shard_paths, write_job_shards
from oskdft.config import load_config, load_data_config
from oskdft.data.audio import load_audio
from oskdft.data.dataset import TrainingWindows, collate_windows
from oskdft.data.windows import make_windows_from_config, read_train_speakers
from oskdft.layout import windows_path
from oskdft.models.teacher import build_ssl_from_arch, load_teacher
from oskdft.utils.errors import InputError
from tests.data.toy_corpus import AUG_SETS, make_toy_corpus, toy_data_config
from tests.models.tiny import tiny_arch

REPO = Path(__file__).resolve().parents[2]
SHARD = 4  # windows per shard: the 18 windows below make 5 shards
FRAMES = 49  # of a 1 s window


def save_teacher(path, seed=0):
    torch.manual_seed(seed)
    build_ssl_from_arch(tiny_arch(num_hidden_layers=2)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A toy recipe after stage 1, a tiny teacher and the YAML configs, as run.sh sees them.
    2 training speakers, 1 s windows every 2 s: 18 windows, so the teacher runs quickly."""
    root = tmp_path_factory.mktemp("recipe")
    data = make_toy_corpus(root, num_speakers=4)
    data_cfg = toy_data_config(window_seconds=1.0, window_hop_seconds=2.0)
    make_windows_from_config(data, data_cfg, "train", AUG_SETS)
    (root / "data.yaml").write_text(yaml.safe_dump(vars(data_cfg)))
    teacher = save_teacher(root / "teacher")
    (root / "sys.yaml").write_text(
        f"teacher:\n  path: {teacher}\nkd:\n  loss: distilhubert\n  target_layers: [1, 2]\n"
    )
    return root


def configs(root, *overrides):
    return load_config(root / "sys.yaml", overrides), load_data_config(root / "data.yaml")


def run_stage2(root, cache_root, num_jobs=2, overrides=()):
    for job in range(1, num_jobs + 1):
        cache_teacher_job(
            root / "sys.yaml",
            root / "data.yaml",
            root / "data",
            cache_root,
            job,
            num_jobs,
            overrides,
            batch_size=3,
            shard_size=SHARD,
        )
    return merge_teacher_cache(
        root / "sys.yaml",
        root / "data.yaml",
        root / "data",
        cache_root,
        num_jobs,
        overrides,
        shard_size=SHARD,
    )


@pytest.fixture(scope="module")
def cache(recipe, tmp_path_factory):
    cache_root = tmp_path_factory.mktemp("cache")
    run_stage2(recipe, cache_root)
    return open_teacher_cache(*configs(recipe), recipe / "data", cache_root)


def test_cache_round_trip_equals_the_teachers_output(recipe, cache):
    teacher = load_teacher(configs(recipe)[0].teacher.path)
    assert cache.layers == [1, 2]
    windows = list(CutSet.from_file(windows_path(recipe / "data")))
    cached = list(CutSet.from_file(cache.cuts_path))
    assert [c.id for c in cached] == [w.id for w in windows]
    hidden_states = teacher(torch.from_numpy(np.stack([load_audio(w) for w in windows])))
    for row, cut in enumerate(cached):
        stored = cut.teacher_hidden.load()
        assert stored.dtype == np.float16 and stored.shape == (2, FRAMES, 32)
        for i, layer in enumerate(cache.layers):
            np.testing.assert_allclose(
                stored[i], hidden_states[layer][row].numpy(), rtol=2e-3, atol=2e-3
            )
    meta = yaml.safe_load((cache.path / "meta.yaml").read_text())
    assert (meta["num_windows"], meta["layers"], meta["frames"]) == (len(windows), [1, 2], FRAMES)


def test_cached_dataset_gives_the_stored_arrays_with_any_number_of_workers(recipe, cache):
    data = recipe / "data"
    dataset = TrainingWindows(
        cache.cuts_path, read_train_speakers(data), teacher_layers=cache.layers
    )
    example = dataset[(0, 5)]
    stored = list(CutSet.from_file(cache.cuts_path))[5].teacher_hidden.load()
    assert set(example["teacher_hidden"]) == {1, 2}
    np.testing.assert_array_equal(example["teacher_hidden"][2], stored[1])

    def batches(workers):
        loader = DataLoader(
            dataset,
            batch_size=4,
            sampler=[(0, i) for i in range(8)],
            num_workers=workers,
            collate_fn=collate_windows,
        )
        return list(loader)

    for a, b in zip(batches(0), batches(2), strict=True):
        assert a["teacher_hidden"][1].shape == (4, FRAMES, 32)
        assert a["teacher_hidden"][1].dtype == torch.float16
        assert all(torch.equal(a["teacher_hidden"][k], b["teacher_hidden"][k]) for k in (1, 2))
    with pytest.raises(ValueError, match="stack 2 layers"):
        TrainingWindows(cache.cuts_path, read_train_speakers(data), teacher_layers=[2])


def test_the_data_layer_reads_cached_arrays_without_the_cache_package(recipe, cache):
    # A fresh interpreter: nothing has imported oskdft.cache (which writes the cache) there.
    script = (
        "import sys\n"
        "from oskdft.data.dataset import TrainingWindows\n"
        "from oskdft.data.windows import read_train_speakers\n"
        "data, cuts = sys.argv[1:]\n"
        "dataset = TrainingWindows(cuts, read_train_speakers(data), teacher_layers=[1, 2])\n"
        "print(float(dataset[(0, 3)]['teacher_hidden'][2].astype('float64').sum()))\n"
        "assert 'oskdft.cache' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(recipe / "data"), str(cache.cuts_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stored = list(CutSet.from_file(cache.cuts_path))[3].teacher_hidden.load()[1]
    assert float(result.stdout) == pytest.approx(float(stored.astype(np.float64).sum()))


def test_a_complete_cache_is_reused_as_it_is(recipe, cache):
    files = sorted(p for p in cache.path.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert run_stage2(recipe, cache.path.parent) == cache.path  # e.g. another system's stage 2
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_windows_with_and_without_arrays_are_refused(recipe, cache, tmp_path):
    cuts = list(CutSet.from_file(cache.cuts_path))
    cuts[3] = cuts[3].drop_custom("teacher_hidden")
    CutSet.from_cuts(cuts).to_file(tmp_path / "mixed.jsonl.gz")
    with pytest.raises(
        InputError,
        match=r"mixed.jsonl.gz:4: window .* some windows have a "
        "teacher_hidden and some not",
    ):
        TrainingWindows(
            tmp_path / "mixed.jsonl.gz",
            read_train_speakers(recipe / "data"),
            teacher_layers=cache.layers,
        )


def test_a_changed_config_gets_a_new_cache_directory(recipe, tmp_path):
    cfg, data_cfg = configs(recipe)
    manifest = windows_path(recipe / "data")
    key = cache_spec(cfg, data_cfg, manifest).key
    assert key.startswith(
        f"{cfg.teacher.path.strip('/').replace('/', '-')[-60:]}_L1-2_sr16000_w1.0h2.0_fp16_"
    )
    assert cache_spec(cfg, data_cfg, manifest).key == key  # stable
    other_layers, _ = configs(recipe, "kd.loss=mse_last")
    hop = load_data_config(recipe / "data.yaml")
    hop.window_hop_seconds = 1.5
    keys = {
        cache_spec(other_layers, data_cfg, manifest).key,
        dataclasses.replace(cache_spec(cfg, data_cfg, manifest), storage="lilcom").key,
        cache_spec(cfg, hop, manifest).key,
    }
    # A teacher retrained at the same path, and other windows, change only the hash.
    retrained = tmp_path / "teacher"
    save_teacher(retrained, seed=1)
    moved, _ = configs(recipe, f"teacher.path={retrained}")
    save_teacher(tmp_path / "teacher", seed=0)  # same weights as the original, other path
    keys.add(cache_spec(moved, data_cfg, manifest).key)
    save_teacher(retrained, seed=2)
    keys.add(cache_spec(moved, data_cfg, manifest).key)
    fewer = tmp_path / "windows.jsonl.gz"
    CutSet.from_file(manifest).subset(first=10).to_file(fewer)
    keys.add(cache_spec(cfg, data_cfg, fewer).key)
    assert key not in keys and len(keys) == 6


class FailingTeacher:
    """Kills the job on the n-th call, as an interrupt or a node failure would."""

    def __init__(self, teacher, fail_on_call):
        self.teacher, self.calls, self.fail_on_call = teacher, 0, fail_on_call

    def __call__(self, wav):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        return self.teacher(wav)


def test_an_interrupted_run_resumes_with_every_window_exactly_once(recipe, tmp_path):
    cfg, data_cfg = configs(recipe)
    manifest = windows_path(recipe / "data")
    spec = cache_spec(cfg, data_cfg, manifest)
    teacher = load_teacher(cfg.teacher.path)
    out = tmp_path / spec.key
    # Job 1 of 1, batches of 2 windows: call 4 is in the second shard (windows 4..7).
    with pytest.raises(KeyboardInterrupt):
        write_job_shards(
            manifest, out, spec, FailingTeacher(teacher, 4), 1, 1, shard_size=SHARD, batch_size=2
        )
    done = sorted(p.name for p in (out / "shards").iterdir())
    assert done == ["000000.f16", "000000.jsonl.gz"]  # nothing half-written, no temporaries
    first_shard = shard_paths(out, 0, "fp16")[0]
    mtime = first_shard.stat().st_mtime_ns
    with pytest.raises(InputError, match="4 of 5 shards are missing"):
        merge_shards(manifest, out, spec, num_jobs=1, shard_size=SHARD)
    leftover = out / "shards" / ".000003.tmp.abcd.f16"  # what a killed process leaves
    leftover.write_bytes(b"partial")
    assert write_job_shards(manifest, out, spec, teacher, 1, 1, shard_size=SHARD) == 4
    assert first_shard.stat().st_mtime_ns == mtime  # the finished shard was kept
    assert not leftover.exists()
    assert merge_shards(manifest, out, spec, num_jobs=1, shard_size=SHARD) == spec.num_windows
    ids = [c.id for c in CutSet.from_file(out / "cuts.jsonl.gz")]
    assert ids == [w.id for w in CutSet.from_file(manifest)] and len(set(ids)) == len(ids)


def test_merge_refuses_a_truncated_shard_file(recipe, tmp_path):
    cfg, data_cfg = configs(recipe)
    manifest = windows_path(recipe / "data")
    spec = cache_spec(cfg, data_cfg, manifest)
    out = tmp_path / spec.key
    write_job_shards(manifest, out, spec, load_teacher(cfg.teacher.path), 1, 1, shard_size=SHARD)
    data_path = shard_paths(out, 2, "fp16")[1]
    with open(data_path, "r+b") as f:  # what a crash before the data reached the disk leaves
        f.truncate(data_path.stat().st_size - 1)
    with pytest.raises(InputError, match="cut short") as error:
        merge_shards(manifest, out, spec, num_jobs=1, shard_size=SHARD)
    assert error.value.path == str(data_path)
    assert not (out / "cuts.jsonl.gz").exists()


def test_merge_names_the_jobs_that_did_not_finish(recipe, tmp_path):
    cache_teacher_job(
        recipe / "sys.yaml",
        recipe / "data.yaml",
        recipe / "data",
        tmp_path,
        job=2,
        num_jobs=3,
        shard_size=SHARD,
    )
    with pytest.raises(InputError, match=r"3 of 5 shards are missing \(jobs 1, 3 of 3"):
        merge_teacher_cache(
            recipe / "sys.yaml",
            recipe / "data.yaml",
            recipe / "data",
            tmp_path,
            num_jobs=3,
            shard_size=SHARD,
        )
    with pytest.raises(InputError, match="run stage 2"):
        open_teacher_cache(*configs(recipe), recipe / "data", tmp_path)


def test_the_size_estimate_is_logged_before_writing(recipe, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cache_teacher_job(
        recipe / "sys.yaml",
        recipe / "data.yaml",
        recipe / "data",
        tmp_path,
        job=1,
        num_jobs=5,
        shard_size=SHARD,
    )
    estimate = next(r.getMessage() for r in caplog.records if "on disk" in r.getMessage())
    num_windows = len(CutSet.from_file(windows_path(recipe / "data")))
    total_kib = num_windows * 2 * FRAMES * 32 * 2 / 1024  # windows x layers x frames x dims x 2 B
    assert f"{num_windows} windows x 2 layers x {FRAMES} frames x 32 dims (fp16)" in estimate
    assert f"about {total_kib:.1f} KiB on disk" in estimate
    assert f"this job (1 of 5): {SHARD} windows" in estimate


def test_non_finite_float16_output_is_refused(recipe, tmp_path):
    cfg, data_cfg = configs(recipe)
    manifest = windows_path(recipe / "data")
    spec = cache_spec(cfg, data_cfg, manifest)
    teacher = load_teacher(cfg.teacher.path)

    def overflowing(wav):  # 1e5 is beyond float16's range
        return tuple(h * 1e5 for h in teacher(wav))

    with pytest.raises(RuntimeError, match="not finite in fp16"):
        write_job_shards(manifest, tmp_path, spec, overflowing, 1, 1, shard_size=SHARD)
    assert not list((tmp_path / "shards").iterdir())


@pytest.mark.parametrize("override", ["teacher.mode=online", "kd.loss=none"])
def test_systems_without_a_cached_teacher_skip_stage_2(recipe, tmp_path, override):
    assert run_stage2(recipe, tmp_path, overrides=[override]) is None
    assert not list(tmp_path.iterdir())
    assert open_teacher_cache(*configs(recipe, override), recipe / "data", tmp_path) is None


def test_the_stage_scripts_run_stages_1_and_2(recipe, tmp_path):
    def script(name):
        return runpy.run_path(str(REPO / "local" / name), run_name="oskdft_test")["main"]

    data = tmp_path / "data"
    shutil.copytree(recipe / "data", data, symlinks=True)
    script("make_windows.py")(
        [
            "--data-config",
            str(recipe / "data.yaml"),
            "--train-set",
            "train",
            "--aug-sets",
            " ".join(AUG_SETS),
            str(data),
        ]
    )
    # Three systems, two of which share a cache (the same teacher and layers).
    (tmp_path / "twin.yaml").write_text(f"base: {recipe / 'sys.yaml'}\ndescription: twin\n")
    (tmp_path / "mse.yaml").write_text(f"base: {recipe / 'sys.yaml'}\nkd:\n  loss: mse_last\n")
    systems = [str(recipe / "sys.yaml"), str(tmp_path / "twin.yaml"), str(tmp_path / "mse.yaml")]
    common = ["--config", *systems, "--data-config", str(recipe / "data.yaml")]
    for job in ("1", "2"):
        script("cache_teacher_feats.py")(
            common + ["--job", job, "--num-jobs", "2", str(data), str(tmp_path / "cache")]
        )
    script("merge_teacher_cache.py")(
        common + ["--num-jobs", "2", str(data), str(tmp_path / "cache")]
    )
    caches = []
    for system, layers in zip(systems, ([1, 2], [1, 2], [2]), strict=True):
        cache = open_teacher_cache(
            load_config(system), load_data_config(recipe / "data.yaml"), data, tmp_path / "cache"
        )
        assert cache.layers == layers
        assert len(CutSet.from_file(cache.cuts_path)) == cache.spec.num_windows
        caches.append(cache.path)
    assert caches[0] == caches[1] != caches[2]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [caches[0].name, caches[2].name]
    ), "one cache per distinct teacher and layers, each system's complete"


LILCOM = importlib.util.find_spec("lilcom") is not None


def test_lilcom_storage_without_its_package_is_an_input_error(recipe, monkeypatch):
    # lilcom is an extra (setup.py): hide it as if it were not installed.
    monkeypatch.setitem(sys.modules, "lilcom", None)
    with pytest.raises(InputError, match="lilcom needs the lilcom package.*pip install lilcom"):
        cache_spec(*configs(recipe, "teacher.cache_storage=lilcom"), windows_path(recipe / "data"))


@pytest.mark.skipif(not LILCOM, reason="needs the lilcom package")
def test_lilcom_cache_round_trip_is_close_to_fp16(recipe, cache, tmp_path):
    lilcom = run_stage2(recipe, tmp_path, overrides=["teacher.cache_storage=lilcom"])
    exact = [c.teacher_hidden.load() for c in CutSet.from_file(cache.cuts_path)]
    lossy = [c.teacher_hidden.load() for c in CutSet.from_file(lilcom / "cuts.jsonl.gz")]
    for a, b in zip(exact, lossy, strict=True):
        np.testing.assert_allclose(b, a, atol=0.05)


def test_front_end_kd_caches_the_teachers_layer_0_under_its_own_key(recipe, tmp_path):
    front = ("kd.front_end=l1_cosine",)
    spec = cache_spec(*configs(recipe, *front), windows_path(recipe / "data"))
    assert spec.layers == (0, 1, 2) and "_L0-1-2_" in spec.key
    assert spec.key != cache_spec(*configs(recipe), windows_path(recipe / "data")).key
    assert run_stage2(recipe, tmp_path, num_jobs=1, overrides=front).name == spec.key
    cache = open_teacher_cache(*configs(recipe, *front), recipe / "data", tmp_path)
    assert cache.layers == [0, 1, 2]
    teacher = load_teacher(configs(recipe)[0].teacher.path)
    window = next(iter(CutSet.from_file(windows_path(recipe / "data"))))
    expected = teacher(torch.from_numpy(load_audio(window))[None])[0][0].numpy()
    stored = next(iter(CutSet.from_file(cache.cuts_path))).teacher_hidden.load()
    np.testing.assert_allclose(stored[0], expected, rtol=2e-3, atol=2e-3)
