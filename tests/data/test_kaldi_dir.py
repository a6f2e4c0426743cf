"""oskdft.data.kaldi_dir: reading, every validation failure (file, line, what to do), import."""

import runpy
from pathlib import Path

import numpy as np
import pytest
import soundfile

from oskdft.data.kaldi_dir import (
    Segment,
    import_data_dir,
    read_data_dir,
    read_table,
    read_trials,
    validate_data_dir,
    write_data_dir,
)
from oskdft.utils.errors import InputError

TEMPLATE_PREPARE = Path(__file__).resolve().parents[2] / "egs" / "TEMPLATE" / "prepare.py"
PREPARE_MANIFESTS = Path(__file__).resolve().parents[2] / "local" / "prepare_manifests.py"


def write_wav(path, seconds=0.2, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.full(int(seconds * rate), 0.1, np.float32), rate)
    return str(path)


def make_dir(tmp_path, speakers=("spkA", "spkB"), utts_per_speaker=2, trials=None):
    """A valid data dir with a wav per utterance; returns its path."""
    wav_scp, utt2spk = {}, {}
    for spk in speakers:
        for i in range(utts_per_speaker):
            utt = f"{spk}-u{i}"
            wav_scp[utt] = write_wav(tmp_path / "audio" / f"{utt}.wav")
            utt2spk[utt] = spk
    write_data_dir(tmp_path / "set", wav_scp, utt2spk, trials)
    return tmp_path / "set"


def assert_error(error, path, line, words):
    assert error.path == str(path)
    assert error.line == line
    for word in words:
        assert word in str(error)


def test_written_dir_reads_back(tmp_path):
    trials = {"t": [("spkA-u0", "spkA-u1", True), ("spkA-u0", "spkB-u0", False)]}
    d = make_dir(tmp_path, trials=trials)
    assert (d / "spk2utt").read_text() == "spkA spkA-u0 spkA-u1\nspkB spkB-u0 spkB-u1\n"
    data, recordings = validate_data_dir(d, require_trials=True, min_utts_per_speaker=2)
    assert data.utt2spk == {
        "spkA-u0": "spkA",
        "spkA-u1": "spkA",
        "spkB-u0": "spkB",
        "spkB-u1": "spkB",
    }
    assert data.trials == trials
    assert sorted(recordings) == data.utterances
    assert recordings["spkA-u0"].duration == pytest.approx(0.2)


def test_wav_scp_value_keeps_command_spaces(tmp_path):
    (tmp_path / "wav.scp").write_text("a sox  x.wav -t wav - |\n")
    assert read_table(tmp_path / "wav.scp") == {"a": "sox  x.wav -t wav - |"}


def test_unsorted_keys(tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\nc-1 c\nb-1 b\n")
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "utt2spk", num_fields=2)
    assert_error(e.value, tmp_path / "utt2spk", 3, ["not sorted", "LC_ALL=C sort"])


def test_duplicate_keys(tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\nb-1 b\na-1 a\n")
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "utt2spk", num_fields=2, require_sorted=False)
    assert_error(e.value, tmp_path / "utt2spk", 3, ["duplicate key 'a-1'", "first on line 1"])


def test_malformed_line(tmp_path):
    (tmp_path / "utt2spk").write_text("a-1 a\nb-1\n")
    with pytest.raises(InputError) as e:
        read_table(tmp_path / "utt2spk", num_fields=2)
    assert_error(e.value, tmp_path / "utt2spk", 2, ["expected 2 fields"])


def test_empty_data_dir(tmp_path):
    d = make_dir(tmp_path)
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (d / name).write_text("")
    with pytest.raises(InputError, match="wav.scp: no recordings"):
        read_data_dir(d)


def test_missing_audio(tmp_path):
    d = make_dir(tmp_path)
    Path(read_data_dir(d).wav_scp["spkB-u0"]).unlink()
    with pytest.raises(InputError) as e:
        validate_data_dir(d)
    assert_error(e.value, d / "wav.scp", 3, ["spkB-u0", "audio file not found"])
    assert "fix the path" in e.value.hint


def test_unreadable_audio_and_count_of_others(tmp_path):
    d = make_dir(tmp_path)
    wav_scp = read_data_dir(d).wav_scp
    for utt in ("spkA-u1", "spkB-u1"):
        Path(wav_scp[utt]).write_bytes(b"not audio")
    with pytest.raises(InputError) as e:
        validate_data_dir(d)
    assert_error(
        e.value, d / "wav.scp", 2, ["spkA-u1", "not readable", "1 more bad entries", "lines 4"]
    )


def test_zero_length_audio(tmp_path):
    d = make_dir(tmp_path)
    soundfile.write(read_data_dir(d).wav_scp["spkA-u0"], np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError) as e:
        validate_data_dir(d)
    assert_error(e.value, d / "wav.scp", 1, ["spkA-u0", "no samples"])


def test_trial_naming_unknown_utterance(tmp_path):
    d = make_dir(
        tmp_path, trials={"t": [("spkA-u0", "spkA-u1", True), ("spkA-u0", "spkC-u9", False)]}
    )
    with pytest.raises(InputError) as e:
        validate_data_dir(d, require_trials=True)
    assert_error(e.value, d / "trials_t", 2, ["unknown utterance 'spkC-u9'"])


def test_bad_trial_label(tmp_path):
    (tmp_path / "trials").write_text("a b target\na c yes\n")
    with pytest.raises(InputError) as e:
        read_trials(tmp_path / "trials")
    assert_error(e.value, tmp_path / "trials", 2, ["target|nontarget"])


def test_eval_set_needs_trials(tmp_path):
    d = make_dir(tmp_path)
    with pytest.raises(InputError, match="at least one trial list"):
        validate_data_dir(d, require_trials=True)


def test_training_speaker_with_one_utterance(tmp_path):
    d = make_dir(tmp_path)
    wav = write_wav(tmp_path / "audio" / "spkC-u0.wav")
    with open(d / "wav.scp", "a") as f:
        f.write(f"spkC-u0 {wav}\n")
    with open(d / "utt2spk", "a") as f:
        f.write("spkC-u0 spkC\n")
    (d / "spk2utt").unlink()
    validate_data_dir(d)  # fine outside a training set
    with pytest.raises(InputError) as e:
        validate_data_dir(d, min_utts_per_speaker=2)
    assert_error(e.value, d / "utt2spk", 5, ["'spkC' has 1 utterance", "at least 2"])
    assert "more speakers" not in str(e.value)


def test_utterance_without_speaker(tmp_path):
    d = make_dir(tmp_path)
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(InputError) as e:
        read_data_dir(d)
    assert_error(e.value, d / "wav.scp", 1, ["'spkA-u0' has no speaker"])


def test_speaker_map_of_unknown_utterance(tmp_path):
    d = make_dir(tmp_path)
    with open(d / "utt2spk", "a") as f:
        f.write("spkZ-u0 spkZ\n")
    with pytest.raises(InputError) as e:
        read_data_dir(d)
    assert_error(e.value, d / "utt2spk", 5, ["'spkZ-u0' is not in wav.scp"])


def test_spk2utt_disagreeing_with_utt2spk(tmp_path):
    d = make_dir(tmp_path)
    (d / "spk2utt").write_text("spkA spkA-u0\nspkB spkA-u1 spkB-u0 spkB-u1\n")
    with pytest.raises(InputError) as e:
        read_data_dir(d)
    assert_error(e.value, d / "spk2utt", 1, ["'spkA' disagrees with utt2spk"])


def test_missing_utt2spk_where_speakers_are_needed(tmp_path):
    d = make_dir(tmp_path)
    (d / "utt2spk").unlink()
    with pytest.raises(InputError, match="utt2spk: file not found"):
        read_data_dir(d)
    assert read_data_dir(d, require_speakers=False).utt2spk is None


def test_segments(tmp_path):
    d = tmp_path / "set"
    write_data_dir(
        d,
        {"rec1": write_wav(tmp_path / "rec1.wav", seconds=2.0)},
        {"spkA-1": "spkA", "spkA-2": "spkA"},
    )
    (d / "segments").write_text("spkA-1 rec1 0.0 0.5\nspkA-2 rec1 1.0 -1\n")
    (d / "spk2utt").unlink()
    data, recordings = validate_data_dir(d, min_utts_per_speaker=2)
    assert data.utterances == ["spkA-1", "spkA-2"]
    assert data.segments["spkA-2"] == Segment("rec1", 1.0, None)
    assert list(recordings) == ["rec1"]


@pytest.mark.parametrize(
    "line, words",
    [
        ("spkA-1 rec1 0.0 2.8", ["outside recording 'rec1'"]),
        ("spkA-1 rec9 0.0 0.5", ["recording 'rec9' is not in wav.scp"]),
        ("spkA-1 rec1 0.6 0.5", ["0 <= start < end"]),
    ],
)
def test_bad_segment(tmp_path, line, words):
    d = tmp_path / "set"
    write_data_dir(d, {"rec1": write_wav(tmp_path / "rec1.wav", seconds=2.0)}, {"spkA-1": "spkA"})
    (d / "segments").write_text(line + "\n")
    with pytest.raises(InputError) as e:
        validate_data_dir(d)
    assert_error(e.value, d / "segments", 1, words)


def test_import_sorts_and_converts_voxceleb_trials(tmp_path):
    src = tmp_path / "kaldi"
    src.mkdir()
    a = write_wav(tmp_path / "a.wav")
    (src / "wav.scp").write_text(f"id2-v-00001 {a}\nid1-v-00002 {a}\nid1-v-00001 {a}\n")
    (src / "utt2spk").write_text("id2-v-00001 id2\nid1-v-00002 id1\nid1-v-00001 id1\n")
    (tmp_path / "list.txt").write_text(
        "1 id1/v/00001.wav id1/v/00002.wav\n0 id1/v/00001.wav id2/v/00001.wav\n"
    )
    (tmp_path / "kaldi_trials").write_text("id1-v-00002 id2-v-00001 nontarget\n")
    dst = tmp_path / "data" / "test"
    import_data_dir(src, dst, trials={"O": tmp_path / "list.txt", "k": tmp_path / "kaldi_trials"})
    assert (dst / "wav.scp").read_text().splitlines()[0] == f"id1-v-00001 {a}"
    assert (dst / "spk2utt").read_text() == "id1 id1-v-00001 id1-v-00002\nid2 id2-v-00001\n"
    assert (dst / "trials_O").read_text() == (
        "id1-v-00001 id1-v-00002 target\nid1-v-00001 id2-v-00001 nontarget\n"
    )
    assert (dst / "trials_k").read_text() == "id1-v-00002 id2-v-00001 nontarget\n"
    validate_data_dir(dst, require_trials=True)


def test_import_keeps_segments_sorted(tmp_path):
    src = tmp_path / "kaldi"
    src.mkdir()
    (src / "wav.scp").write_text("rec2 /corpus/rec2.wav\nrec1 /corpus/rec1.wav\n")
    (src / "utt2spk").write_text("spkB-1 spkB\nspkA-1 spkA\n")
    (src / "segments").write_text("spkB-1 rec2 1.5 -1\nspkA-1 rec1 0.25 2.5\n")
    dst = tmp_path / "data" / "train"
    import_data_dir(src, dst)
    assert (dst / "segments").read_text() == "spkA-1 rec1 0.25 2.5\nspkB-1 rec2 1.5 -1\n"
    assert read_data_dir(dst).segments == {
        "spkA-1": Segment("rec1", 0.25, 2.5),
        "spkB-1": Segment("rec2", 1.5, None),
    }


def test_import_rejects_trials_of_unknown_utterances_and_keeps_old_dir(tmp_path):
    src = make_dir(tmp_path)
    dst = tmp_path / "data" / "test"
    import_data_dir(src, dst)
    before = (dst / "wav.scp").read_text()
    (tmp_path / "list.txt").write_text("1 spkA/u0.wav spkQ/u0.wav\n")
    with pytest.raises(InputError) as e:
        import_data_dir(src, dst, trials={"O": tmp_path / "list.txt"})
    assert_error(e.value, tmp_path / "list.txt", 1, ["unknown utterance 'spkQ-u0'"])
    assert (dst / "wav.scp").read_text() == before


def test_template_recipe_imports_kaldi_dirs(tmp_path):
    train, test = make_dir(tmp_path / "train"), make_dir(tmp_path / "test")
    (tmp_path / "trials").write_text("spkA-u0 spkB-u1 nontarget\n")
    (tmp_path / "rirs" / "simulated_rirs" / "smallroom" / "Room001").mkdir(parents=True)
    write_wav(tmp_path / "rirs" / "simulated_rirs" / "smallroom" / "Room001" / "Room001-1.wav")
    prepare = runpy.run_path(str(TEMPLATE_PREPARE))
    prepare["main"](
        [
            f"--train-dir={train}",
            f"--eval-dir={test}",
            f"--trials=test={tmp_path / 'trials'}",
            f"--rirs={tmp_path / 'rirs'}",
            str(tmp_path / "data"),
        ]
    )
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir()) == ["rirs", "test", "train"]
    assert (data / "test" / "trials_test").read_text() == "spkA-u0 spkB-u1 nontarget\n"
    assert read_table(data / "rirs" / "wav.scp").keys() == {"smallroom-Room001-Room001-1"}
    validate_data_dir(data / "train", min_utts_per_speaker=2)


def test_evaluation_utterances_shorter_than_the_minimum_are_named(tmp_path):
    d = make_dir(tmp_path)  # 0.2 s utterances
    wav_scp = read_data_dir(d).wav_scp
    write_wav(Path(wav_scp["spkA-u1"]), seconds=0.05)
    write_wav(Path(wav_scp["spkB-u1"]), seconds=8 / 16000)  # a truncated file: 8 samples
    validate_data_dir(d)  # no minimum: fine
    with pytest.raises(InputError) as e:
        validate_data_dir(d, min_seconds=0.1)
    assert_error(
        e.value,
        d / "wav.scp",
        2,
        [
            "'spkA-u1' lasts 0.050 s",
            "shorter than the 0.1 s",
            "1 more utterances are too",
            "--min-eval-seconds",
        ],
    )
    with pytest.raises(InputError) as e:  # 0.05 s is at the minimum; the 8 samples are not
        validate_data_dir(d, min_seconds=0.05)
    assert_error(e.value, d / "wav.scp", 4, ["'spkB-u1' lasts 0.001 s"])
    assert "more" not in str(e.value)


def test_a_segment_shorter_than_the_minimum_is_named_by_its_segments_line(tmp_path):
    d = tmp_path / "set"
    write_data_dir(
        d,
        {"rec1": write_wav(tmp_path / "rec1.wav", seconds=2.0)},
        {"spkA-1": "spkA", "spkA-2": "spkA"},
    )
    (d / "segments").write_text("spkA-1 rec1 0.0 1.0\nspkA-2 rec1 1.96 2.3\n")  # 0.04 s of audio
    with pytest.raises(InputError) as e:
        validate_data_dir(d, min_seconds=0.1)
    assert_error(e.value, d / "segments", 2, ["'spkA-2' lasts 0.040 s"])


def test_stage_0_refuses_short_evaluation_utterances_not_training_ones(tmp_path):
    data = tmp_path / "data"
    for name, seconds in (("train", 0.05), ("test", 0.2)):
        wav_scp = {
            f"spk{s}-u{i}": write_wav(tmp_path / name / f"spk{s}-u{i}.wav", seconds)
            for s in "AB"
            for i in range(2)
        }
        write_data_dir(
            data / name,
            wav_scp,
            {utt: utt[:4] for utt in wav_scp},
            {"x": [("spkA-u0", "spkB-u0", False)]} if name == "test" else None,
        )
    main = runpy.run_path(str(PREPARE_MANIFESTS))["main"]
    main(["--train-set", "train", "--eval-sets", "test", "--num-threads", "1", str(data)])
    with pytest.raises(InputError) as e:
        main(
            [
                "--train-set",
                "train",
                "--eval-sets",
                "test",
                "--min-eval-seconds",
                "0.5",
                "--num-threads",
                "1",
                str(data),
            ]
        )
    assert str(e.value).startswith(
        f"{data / 'test' / 'wav.scp'}:1: utterance 'spkA-u0' lasts 0.200 s, shorter than the 0.5 s"
    )
