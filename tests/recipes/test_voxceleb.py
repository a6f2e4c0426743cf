"""VoxCeleb prep on a fake corpus tree built here: sets, ids, trials, the m4a conversion,
MUSAN/RIRs, and stage 0's validation of the result."""

import os
import runpy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from oskdft.data.kaldi_dir import read_data_dir, read_table
from oskdft.data.manifests import prepare_manifests
from oskdft.recipes import voxceleb
from oskdft.recipes.voxceleb import convert_m4a_tree
from oskdft.utils.errors import InputError

PREPARE = Path(__file__).resolve().parents[2] / "egs" / "voxceleb" / "prepare.py"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

VOX1 = [
    "id10001/vidA/00001",
    "id10001/vidA/00002",
    "id10001/vidB/00001",
    "id10002/vidA/00001",
    "id10002/vidC/00001",
    "id10003/-x_y/00001",
    "id10003/-x_y/00002",
    "id10004/vidA/00001",
]
VOX2 = ["id00012/v1/00001", "id00012/v2/00001", "id00013/v1/00001", "id00013/v1/00002"]


def write_wav(path, seconds=0.2):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.full(int(seconds * 16000), 0.1, np.float32), 16000)


@pytest.fixture
def corpus(tmp_path):
    """VoxCeleb1 (speakers 10003-10004 are Vox1-O's), an O and an E list (no H), a
    pre-converted VoxCeleb2 dev tree, MUSAN with a stray README, RIRs with repeated names."""
    for utt in VOX1:
        write_wav(tmp_path / "VoxCeleb1" / "wav" / f"{utt}.wav")
    trials = tmp_path / "VoxCeleb1" / "trials"
    trials.mkdir()
    (trials / "veri_test2.txt").write_text(
        "1 id10003/-x_y/00001.wav id10003/-x_y/00002.wav\n"
        "0 id10003/-x_y/00001.wav id10004/vidA/00001.wav\n"
    )
    (trials / "list_test_all2.txt").write_text("1 id10001/vidA/00001.wav id10001/vidB/00001.wav\n")
    for utt in VOX2:
        write_wav(tmp_path / "vox2_wav" / f"{utt}.wav")
    for part, name in [
        ("music", "fma/music-fma-0000"),
        ("noise", "free-sound/noise-0000"),
        ("speech", "librivox/speech-librivox-0000"),
    ]:
        write_wav(tmp_path / "musan" / part / f"{name}.wav")
    (tmp_path / "musan" / "music" / "README").write_text("not audio")
    for room in ("smallroom", "mediumroom"):
        write_wav(tmp_path / "RIRS_NOISES" / "simulated_rirs" / room / "Room001/Room001-00001.wav")
    return tmp_path


def run_prepare(corpus, *extra):
    runpy.run_path(str(PREPARE))["main"](
        [
            "--voxceleb1",
            str(corpus / "VoxCeleb1"),
            "--trials-dir",
            str(corpus / "VoxCeleb1/trials"),
            "--musan",
            str(corpus / "musan"),
            "--rirs",
            str(corpus / "RIRS_NOISES"),
            *extra,
            str(corpus / "data"),
        ]
    )
    return corpus / "data"


def test_prepare_voxceleb(corpus):
    data = run_prepare(corpus, "--voxceleb2-wav-dir", str(corpus / "vox2_wav"))
    assert sorted(p.name for p in data.iterdir()) == [
        "musan_music",
        "musan_noise",
        "musan_speech",
        "rirs",
        "voxceleb1",
        "voxceleb1_dev",
        "voxceleb2_dev",
    ]

    vox1 = read_data_dir(data / "voxceleb1")
    assert list(vox1.wav_scp) == sorted(utt.replace("/", "-") for utt in VOX1)
    assert vox1.wav_scp["id10003--x_y-00001"] == str(
        corpus / "VoxCeleb1" / "wav" / "id10003" / "-x_y" / "00001.wav"
    )
    assert all(utt.startswith(spk) for utt, spk in vox1.utt2spk.items())
    assert set(vox1.utt2spk.values()) == {"id10001", "id10002", "id10003", "id10004"}
    assert (data / "voxceleb1" / "trials_vox1_O").read_text() == (
        "id10003--x_y-00001 id10003--x_y-00002 target\n"
        "id10003--x_y-00001 id10004-vidA-00001 nontarget\n"
    )
    assert (data / "voxceleb1" / "trials_vox1_E").read_text() == (
        "id10001-vidA-00001 id10001-vidB-00001 target\n"
    )
    assert not (data / "voxceleb1" / "trials_vox1_H").exists()

    dev = read_data_dir(data / "voxceleb1_dev")
    assert set(dev.utt2spk.values()) == {"id10001", "id10002"}, "Vox1-O speakers are removed"
    assert len(dev.wav_scp) == 5

    vox2 = read_data_dir(data / "voxceleb2_dev")
    assert list(vox2.wav_scp) == [utt.replace("/", "-") for utt in VOX2]
    assert vox2.utt2spk["id00013-v1-00002"] == "id00013"

    assert list(read_table(data / "musan_music" / "wav.scp")) == ["fma-music-fma-0000"]
    assert list(read_table(data / "rirs" / "wav.scp")) == [
        "mediumroom-Room001-Room001-00001",
        "smallroom-Room001-Room001-00001",
    ]
    assert not (data / "rirs" / "utt2spk").exists()

    # Stage 0's second half accepts all of it, for either training set.
    for train_set in ("voxceleb2_dev", "voxceleb1_dev"):
        stats = prepare_manifests(
            data,
            train_set,
            ["voxceleb1"],
            ["musan_noise", "musan_music", "musan_speech", "rirs"],
            num_threads=2,
        )
        assert [(s.name, s.utterances) for s in stats][:2] == [
            (train_set, len(read_table(data / train_set / "wav.scp"))),
            ("voxceleb1", 8),
        ]


def test_rerun_replaces_sets_whole(corpus):
    data = run_prepare(corpus, "--voxceleb2-wav-dir", str(corpus / "vox2_wav"))
    (corpus / "VoxCeleb1" / "trials" / "list_test_all2.txt").unlink()
    run_prepare(corpus, "--voxceleb2-wav-dir", str(corpus / "vox2_wav"))
    assert not (data / "voxceleb1" / "trials_vox1_E").exists(), "no stale trial list is left"
    assert (data / "voxceleb1" / "trials_vox1_O").exists()


def test_trial_naming_missing_file(corpus):
    with open(corpus / "VoxCeleb1" / "trials" / "veri_test2.txt", "a") as f:
        f.write("0 id10003/-x_y/00001.wav id10009/vidZ/00001.wav\n")
    with pytest.raises(InputError) as e:
        run_prepare(corpus)
    assert e.value.path.endswith("veri_test2.txt") and e.value.line == 3
    assert "unknown utterance 'id10009-vidZ-00001'" in str(e.value)


def test_no_trial_lists(corpus):
    for name in ("veri_test2.txt", "list_test_all2.txt"):
        (corpus / "VoxCeleb1" / "trials" / name).unlink()
    with pytest.raises(InputError, match="none of the trial lists"):
        run_prepare(corpus)


def test_empty_voxceleb1(corpus):
    shutil.rmtree(corpus / "VoxCeleb1" / "wav")
    (corpus / "VoxCeleb1" / "wav").mkdir()
    with pytest.raises(InputError, match="no audio files match"):
        run_prepare(corpus)


def test_m4a_without_ffmpeg_says_what_to_do(tmp_path, monkeypatch):
    m4a = tmp_path / "aac" / "id00012" / "v1" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    m4a.write_bytes(b"fake")
    monkeypatch.setattr(voxceleb.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="ffmpeg is not installed") as e:
        convert_m4a_tree(tmp_path / "aac", tmp_path / "wav")
    assert "--voxceleb2-wav-dir" in e.value.hint
    # Nothing to convert: ffmpeg is not needed.
    write_wav(tmp_path / "wav" / "id00012" / "v1" / "00001.wav")
    assert convert_m4a_tree(tmp_path / "aac", tmp_path / "wav") == 0


@needs_ffmpeg
def test_m4a_conversion(corpus):
    aac = corpus / "VoxCeleb2" / "dev" / "aac"
    for utt in VOX2[:2]:
        (aac / utt).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-i",
                str(corpus / "vox2_wav" / f"{utt}.wav"),
                "-c:a",
                "aac",
                str(aac / f"{utt}.m4a"),
            ],
            check=True,
        )
    data = run_prepare(corpus, "--voxceleb2", str(corpus / "VoxCeleb2"), "--nj", "2")
    vox2 = read_table(data / "voxceleb2_dev" / "wav.scp")
    assert list(vox2) == ["id00012-v1-00001", "id00012-v2-00001"]
    wav = corpus / "VoxCeleb2" / "dev" / "wav" / "id00012" / "v1" / "00001.wav"
    assert vox2["id00012-v1-00001"] == str(wav)
    info = soundfile.info(wav)
    assert (info.samplerate, info.channels) == (16000, 1)
    assert 0.2 <= info.duration < 0.3  # the aac encoder pads a little
    assert convert_m4a_tree(aac, wav.parents[2]) == 0, "converted files are not redone"


@needs_ffmpeg
def test_m4a_conversion_failure_leaves_no_partial_file(tmp_path):
    m4a = tmp_path / "aac" / "id00012" / "v1" / "00001.m4a"
    m4a.parent.mkdir(parents=True)
    m4a.write_bytes(b"not an m4a file")
    with pytest.raises(InputError, match=r"ffmpeg failed: .*\(1 of 1 files failed\)"):
        convert_m4a_tree(tmp_path / "aac", tmp_path / "wav")
    assert os.listdir(tmp_path / "wav" / "id00012" / "v1") == []
