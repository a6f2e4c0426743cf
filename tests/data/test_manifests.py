"""Stage 0 manifests: contents (ids, speakers, channel 0 at 16 kHz, segments), the stats
table, and that a failed run leaves earlier manifests intact."""

import logging
import runpy
from pathlib import Path

import numpy as np
import pytest
import soundfile
from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSet

from oskdft.data.audio import load_audio
from oskdft.data.kaldi_dir import write_data_dir
from oskdft.data.manifests import prepare_manifests
from oskdft.layout import manifest_path
from oskdft.utils.errors import InputError

PREPARE_MANIFESTS = Path(__file__).resolve().parents[2] / "local" / "prepare_manifests.py"


def write_wav(path, samples, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return str(path)


@pytest.fixture
def data(tmp_path):
    """train: 2 speakers x 2 utterances, one file 8 kHz stereo, VoxCeleb-like duplicate file
    names; test: 2 utterances + trials; noise: 1 file, no speakers."""
    rng = np.random.default_rng(0)
    audio = tmp_path / "audio"
    wav_scp = {
        "s1-v1-00001": write_wav(audio / "s1/v1/00001.wav", rng.uniform(-0.5, 0.5, 3200)),
        "s1-v2-00001": write_wav(
            audio / "s1/v2/00001.wav", rng.uniform(-0.5, 0.5, (4000, 2)), 8000
        ),
        "s2-v1-00001": write_wav(audio / "s2/v1/00001.wav", rng.uniform(-0.5, 0.5, 4800)),
        "s2-v1-00002": write_wav(audio / "s2/v1/00002.wav", rng.uniform(-0.5, 0.5, 1600)),
    }
    utt2spk = {utt: utt.split("-")[0] for utt in wav_scp}
    write_data_dir(tmp_path / "data" / "train", wav_scp, utt2spk)
    test_scp = {"t1-a": wav_scp["s1-v1-00001"], "t2-a": f"cat {wav_scp['s2-v1-00001']} |"}
    write_data_dir(
        tmp_path / "data" / "test",
        test_scp,
        {"t1-a": "t1", "t2-a": "t2"},
        trials={"x": [("t1-a", "t2-a", False)]},
    )
    write_data_dir(
        tmp_path / "data" / "noise",
        {"n1": write_wav(audio / "n1.wav", rng.uniform(-0.5, 0.5, 8000))},
    )
    return tmp_path / "data"


def run_stage(data, train="train", eval_sets="test", aug_sets="noise", min_utts=2):
    runpy.run_path(str(PREPARE_MANIFESTS))["main"](
        [
            "--train-set",
            train,
            "--eval-sets",
            eval_sets,
            "--aug-sets",
            aug_sets,
            "--min-utts-per-speaker",
            str(min_utts),
            "--num-threads",
            "2",
            str(data),
        ]
    )


def test_manifest_contents(data):
    run_stage(data)
    recordings = RecordingSet.from_file(manifest_path(data, "train", "recordings")).to_eager()
    supervisions = SupervisionSet.from_file(manifest_path(data, "train", "supervisions")).to_eager()
    cuts = CutSet.from_file(manifest_path(data, "train", "cuts")).to_eager()
    utts = ["s1-v1-00001", "s1-v2-00001", "s2-v1-00001", "s2-v1-00002"]
    assert sorted(recordings.ids) == utts and sorted(cuts.ids) == utts
    assert {s.id: s.speaker for s in supervisions} == {u: u[:2] for u in utts}
    for cut in cuts:
        assert isinstance(cut, MonoCut) and cut.channel == 0 and cut.sampling_rate == 16000
        assert [s.speaker for s in cut.supervisions] == [cut.id[:2]]
        assert cut.supervisions[0].start == 0 and cut.supervisions[0].duration == cut.duration
    stereo = cuts["s1-v2-00001"]
    assert stereo.recording.num_channels == 2 and stereo.duration == pytest.approx(0.5)
    np.testing.assert_array_equal(
        stereo.load_audio()[0], load_audio(recordings["s1-v2-00001"].sources[0].source)
    )
    assert cuts["s2-v1-00002"].duration == pytest.approx(0.1)


def test_eval_and_augmentation_sets(data):
    run_stage(data)
    test_cuts = CutSet.from_file(manifest_path(data, "test", "cuts")).to_eager()
    piped = test_cuts["t2-a"].recording.sources[0]
    assert piped.type == "command" and piped.source.startswith("cat ")
    assert test_cuts["t2-a"].load_audio().shape == (1, 4800)
    noise_cuts = CutSet.from_file(manifest_path(data, "noise", "cuts")).to_eager()
    assert list(noise_cuts.ids) == ["n1"] and noise_cuts["n1"].supervisions == []
    assert manifest_path(data, "noise", "recordings").exists()
    assert not manifest_path(data, "noise", "supervisions").exists()


def test_stats_table(data, caplog):
    with caplog.at_level(logging.INFO):
        stats = prepare_manifests(data, "train", ["test"], ["noise"], num_threads=1)
    by_name = {s.name: s for s in stats}
    assert [by_name["train"].speakers, by_name["train"].utterances] == [2, 4]
    assert by_name["train"].hours == pytest.approx((0.2 + 0.5 + 0.3 + 0.1) / 3600)
    assert by_name["noise"].speakers is None and by_name["noise"].utterances == 1
    table = caplog.text[caplog.text.index("set  ") :]
    assert "speakers  utterances     hours" in table
    assert "train         2           4      0.00" in table


def test_segments_become_sub_range_cuts(tmp_path):
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, 32000).astype(np.float32)
    d = tmp_path / "data" / "train"
    write_data_dir(
        d, {"rec": write_wav(tmp_path / "rec.wav", samples)}, {"spk-a": "spk", "spk-b": "spk"}
    )
    (d / "segments").write_text("spk-a rec 0.5 1.0\nspk-b rec 1.25 2.3\n")  # b overshoots
    run_stage(tmp_path / "data", eval_sets="", aug_sets="")
    cuts = CutSet.from_file(manifest_path(tmp_path / "data", "train", "cuts")).to_eager()
    supervisions = (
        SupervisionSet.from_file(manifest_path(tmp_path / "data", "train", "supervisions"))
        .to_eager()
        .to_eager()
    )
    a, b = cuts["spk-a"], cuts["spk-b"]
    assert (a.start, a.duration, b.start, b.duration) == (0.5, 0.5, 1.25, 0.75)
    assert a.supervisions[0].start == 0 and supervisions["spk-a"].start == 0.5
    np.testing.assert_array_equal(a.load_audio()[0], samples[8000:16000])
    np.testing.assert_array_equal(b.load_audio()[0], samples[20000:])


def test_failed_run_keeps_earlier_manifests(data):
    run_stage(data)
    before = {
        kind: manifest_path(data, "train", kind).read_bytes()
        for kind in ("recordings", "supervisions", "cuts")
    }
    Path((data / "train" / "wav.scp").read_text().split()[1]).unlink()
    with pytest.raises(InputError, match="audio file not found"):
        run_stage(data)
    for kind, content in before.items():
        assert manifest_path(data, "train", kind).read_bytes() == content
    expected = [f"{s}_{k}.jsonl.gz" for s in ("train", "test") for k in before]
    expected += ["noise_cuts.jsonl.gz", "noise_recordings.jsonl.gz"]
    assert sorted(p.name for p in (data / "manifests").iterdir()) == sorted(expected), (
        "no temporary files are left"
    )


def test_train_set_rule_applies_to_train_set_only(data):
    lines = (data / "train" / "utt2spk").read_text().replace("s2-v1-00002 s2", "s2-v1-00002 s3")
    (data / "train" / "utt2spk").write_text(lines)
    (data / "train" / "spk2utt").unlink()
    with pytest.raises(InputError, match="'s2' has 1 utterance"):
        run_stage(data)
    # The same speaker mapping is fine in a set that is not for training.
    run_stage(data, train="test", eval_sets="", aug_sets="train", min_utts=1)
    assert manifest_path(data, "train", "supervisions").exists()
