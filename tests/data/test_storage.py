"""oskdft.data.storage: the teacher cache's on-disk array formats, written and read back."""

import io

import numpy as np
import pytest

from oskdft.data.storage import STORAGES, StoredArrays, get_storage
from oskdft.utils.errors import InputError


def serialised(storage_type, path, key, shape):
    """A window's teacher_hidden as lhotse writes it in a manifest."""
    return {
        "array": {
            "storage_type": storage_type,
            "storage_path": str(path),
            "storage_key": key,
            "shape": list(shape),
        },
        "temporal_dim": 1,
        "frame_shift": 0.02,
        "start": 0.0,
    }


def test_an_fp16_shard_written_by_hand_in_the_documented_format_loads(tmp_path):
    # The format caches on disk already use: .npy records appended to one file, each keyed
    # "<byte offset>,<byte length>". Written here without the module's writer.
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 5, 3)).astype(np.float16) for _ in range(3)]
    path = tmp_path / "000000.f16"
    keys = []
    with open(path, "wb") as f:
        for a in arrays:
            record = io.BytesIO()
            np.save(record, a)
            keys.append(f"{f.tell()},{len(record.getvalue())}")
            f.write(record.getvalue())
    stored = StoredArrays(tmp_path / "cuts.jsonl.gz")
    for i, key in enumerate(keys):
        stored.add(serialised("oskdft_fp16_chunky", path, key, (2, 5, 3)), f"w{i}", i + 1)
    stored.finish()
    assert len(stored) == 3 and stored.shape == [2, 5, 3] and stored.paths == [str(path)]
    for i in (2, 0, 1):
        loaded = stored.load(i)
        assert loaded.dtype == np.float16
        np.testing.assert_array_equal(loaded, arrays[i])
    # The size a truncated file would lack: the end of the last record.
    fp16 = get_storage("fp16")
    assert max(fp16.record_end(k) for k in keys) == path.stat().st_size


def test_the_writer_and_the_reader_round_trip(tmp_path):
    values = np.linspace(-3, 3, 24).reshape(2, 4, 3)
    with get_storage("fp16").writer(tmp_path / "s.f16") as writer:
        first = writer.store_array("a", values)
        second = writer.store_array("b", -values)
    stored = StoredArrays("cuts")
    for i, a in enumerate((first, second)):
        stored.add(serialised(a.storage_type, a.storage_path, a.storage_key, a.shape), f"w{i}", i)
    stored.finish()
    np.testing.assert_array_equal(stored.load(1), (-values).astype(np.float16))


def test_what_each_storage_reads_back_and_needs_on_disk():
    # get_storage would refuse lilcom where its package is missing; the registry has it.
    fp16, lilcom = get_storage("fp16"), STORAGES.get("lilcom")
    values = np.array([1.0, 70000.0])  # beyond float16's largest, 65504
    assert fp16.as_stored(values).dtype == np.float16
    assert np.isinf(fp16.as_stored(values)[1]), "an overflow must show before writing"
    assert lilcom.as_stored(values) is values, "lossy: nothing known before writing"
    assert fp16.record_end("100,28") == 128
    assert lilcom.record_end("anything") == 0, "lilcom's keys are not byte ranges"


def test_arrays_unlike_the_first_or_of_unknown_storage_are_refused(tmp_path):
    stored = StoredArrays(tmp_path / "cuts.jsonl.gz")
    stored.add(serialised("oskdft_fp16_chunky", "a.f16", "0,1", (2, 5, 3)), "w1", 1)
    with pytest.raises(InputError, match=r"cuts.jsonl.gz:2: w2: array stored as .* \[2, 6, 3\]"):
        stored.add(serialised("oskdft_fp16_chunky", "a.f16", "1,1", (2, 6, 3)), "w2", 2)
    with pytest.raises(InputError, match=r"cuts.jsonl.gz:3: w3: .*lilcom_chunky"):
        stored.add(serialised("lilcom_chunky", "a.lca", "0", (2, 5, 3)), "w3", 3)
    fresh = StoredArrays(tmp_path / "cuts.jsonl.gz")
    with pytest.raises(InputError, match=r"cuts.jsonl.gz:7: w1: no reader for .*'npy_nowhere'"):
        fresh.add(serialised("npy_nowhere", "a.x", "0", (1,)), "w1", 7)
