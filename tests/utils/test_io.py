import os

import numpy as np
import pytest

from oskdft.utils.io import atomic_dir, atomic_path, atomic_write
from oskdft.utils.kaldi_io import read_scp, read_scp_keys, write_ark_scp, write_scp_index


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("new, half written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"], "the temporary file must be removed"


def test_atomic_path_keeps_suffix_and_renames(tmp_path):
    target = tmp_path / "cuts.jsonl.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".jsonl.gz") and tmp != target
        tmp.write_bytes(b"x")
        assert not target.exists()
    assert target.read_bytes() == b"x"


def test_atomic_dir_replaces_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as d:
        (d / "f").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(out) as d:
            (d / "f").write_text("2")
            raise ValueError
    assert (out / "f").read_text() == "1"
    with atomic_dir(out) as d:
        (d / "g").write_text("3")
    assert sorted(os.listdir(out)) == ["g"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_ark_scp_round_trip_and_final_paths(tmp_path):
    rng = np.random.default_rng(0)
    items = {f"spk{i}-utt": rng.standard_normal((5, 3)).astype(np.float32) for i in range(4)}
    n = write_ark_scp(tmp_path / "x.ark", tmp_path / "x.scp", items.items())
    assert n == 4
    assert all(str(tmp_path / "x.ark:") in line for line in open(tmp_path / "x.scp"))
    back = read_scp(tmp_path / "x.scp")
    assert list(back) == list(items)
    for key in items:
        np.testing.assert_array_equal(back[key], items[key])
    assert read_scp_keys(tmp_path / "x.scp") == list(items)


def test_scp_index_is_sorted_in_c_order(tmp_path):
    write_scp_index(
        tmp_path / "x.scp", ["b x.ark:9\n", "B x.ark:5\n", "a-2 x.ark:1\n", "a x.ark:3\n"]
    )
    assert read_scp_keys(tmp_path / "x.scp") == ["B", "a", "a-2", "b"]


def test_ark_writer_failure_leaves_nothing(tmp_path):
    def items():
        yield "a", np.zeros(2, np.float32)
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_ark_scp(tmp_path / "x.ark", tmp_path / "x.scp", items())
    assert os.listdir(tmp_path) == []
