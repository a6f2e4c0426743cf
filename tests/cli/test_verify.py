"""``oskdft verify MODEL a.wav b.wav``: stage 5's score, calibrated, and a decision."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from oskdft.cli.main import main
from oskdft.inference.onnx_runtime import resample
from tests.cli.deployed_recipe import FINAL, MODELS, ONNX

REPO = Path(__file__).resolve().parents[2]


def wav_scp(root):
    return dict(line.split() for line in (root / "data/test/wav.scp").read_text().splitlines())


def stage_5_score(root, backend, enrol, test):
    for line in (root / f"exp/sys/scores/test.{backend}.score").read_text().splitlines():
        utt1, utt2, score, _ = line.split()
        if (utt1, utt2) == (enrol, test):
            return float(score)
    raise AssertionError(f"no trial {enrol} {test}")


def verify(capsys, *args):
    """Run the command; its output lines as ``{first word: the rest}``."""
    assert main(["verify", *map(str, args)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split(maxsplit=1)[1] for line in lines}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("backend", ["cosine", "cosine_mean", "fused"])
def test_verify_scores_a_pair_as_stage_5_did(deployed, capsys, model, backend):
    wavs = wav_scp(deployed)
    utts = sorted(wavs)
    calibration = json.loads((deployed / "exp/sys/scores/calibration.json").read_text())
    for enrol, test in [(utts[0], utts[2]), (utts[1], utts[5])]:
        out = verify(capsys, deployed / model, wavs[enrol], wavs[test], "--backend", backend)
        score = float(out["score"].split()[0])
        assert out["score"].endswith(f"({backend})")
        assert score == pytest.approx(stage_5_score(deployed, backend, enrol, test), abs=1e-5)
        entry = calibration["backends"][backend]
        llr = float(out["llr"])
        assert llr == pytest.approx(entry["scale"] * score + entry["offset"], abs=1e-3)
        assert float(out["threshold"].split()[0]) == pytest.approx(
            entry["thresholds"]["eer"], abs=1e-4
        )
        expected = "same speaker" if llr >= entry["thresholds"]["eer"] else "different speakers"
        assert out["decision"] == expected


@pytest.mark.parametrize("model", MODELS)
def test_verify_uses_the_deployment_back_end_and_the_chosen_operating_point(
    deployed, capsys, model
):
    wavs = list(wav_scp(deployed).values())
    out = verify(capsys, deployed / model, wavs[0], wavs[1], "--operating-point", "p_target=0.01")
    assert out["score"].endswith("(cosine_mean)")  # eval.deploy_backend of the system
    # The Bayes threshold log(0.99 / 0.01): no score of a random model reaches it.
    assert out["threshold"] == "4.5951 (p_target=0.01)"
    assert out["decision"] == "different speakers"


def test_verify_takes_any_sample_rate_and_the_first_channel(deployed, capsys, tmp_path):
    """Stage 0's rule, applied by lhotse for a final dir and by numpy for an ONNX model."""
    wavs = list(wav_scp(deployed).values())
    audio, _ = sf.read(wavs[2], dtype="float32")
    at_44k = resample(audio, 16000, 44100)
    mono = tmp_path / "mono.wav"
    stereo = tmp_path / "stereo.flac"
    sf.write(mono, at_44k, 44100, subtype="FLOAT")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, len(at_44k))
    sf.write(stereo, np.stack([at_44k, noise], axis=1), 44100, subtype="PCM_24")
    scores = {}
    for model in MODELS:
        for name, path in (("mono", mono), ("stereo", stereo)):
            out = verify(capsys, deployed / model, wavs[0], path, "--backend", "cosine")
            scores[model, name] = float(out["score"].split()[0])
    assert scores[FINAL, "mono"] == pytest.approx(scores[ONNX, "mono"], abs=1e-4)
    # 24-bit samples of the first channel: the second channel (noise) plays no part.
    for model in MODELS:
        assert scores[model, "stereo"] == pytest.approx(scores[model, "mono"], abs=1e-3)


def verify_with_imports_blocked(blocked: str, *args: str) -> subprocess.CompletedProcess:
    """``oskdft verify args...`` in a child process where importing a module for which the
    Python expression ``blocked`` (over ``name``) is true fails."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if {blocked}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from oskdft.cli.main import main\n"
        "sys.exit(main(['verify'] + sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True
    )


def test_an_onnx_model_verifies_without_torch(deployed, capsys):
    wavs = list(wav_scp(deployed).values())
    args = [str(deployed / ONNX), wavs[0], wavs[3]]
    expected = verify(capsys, *args)
    run = verify_with_imports_blocked(
        "name.split('.')[0] in ('torch', 'torchaudio', 'lhotse', 'transformers')", *args
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"score      {expected['score']}"


def test_a_final_dir_verifies_without_the_quantiser(deployed):
    """Only stage 6 quantises: verify with a final/ dir must not import onnxruntime's quantiser."""
    wavs = list(wav_scp(deployed).values())
    run = verify_with_imports_blocked(
        "name.startswith('onnxruntime.quantization')", str(deployed / FINAL), wavs[0], wavs[3]
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("decision")


def test_a_corrupt_wav_is_named(deployed, capsys, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00 this is not audio")
    good = list(wav_scp(deployed).values())[0]
    for model in MODELS:
        assert main(["verify", str(deployed / model), good, str(bad)]) == 1
        err = capsys.readouterr().err
        assert f"{bad}: audio" in err and "not readable" in err


def test_a_missing_or_wrong_model_is_named(deployed, capsys, tmp_path):
    good = list(wav_scp(deployed).values())[0]
    assert main(["verify", str(tmp_path / "missing"), good, good]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing'}: no such file or directory" in err
    assert "exp/<system>/final/" in err  # what to give instead
    assert main(["verify", str(deployed / "data"), good, good]) == 1
    assert f"{deployed / 'data'}: not a model" in capsys.readouterr().err


def test_an_unknown_operating_point_lists_the_saved_ones(deployed, capsys):
    good = list(wav_scp(deployed).values())[0]
    assert main(["verify", str(deployed / ONNX), good, good, "--operating-point", "dcf"]) == 1
    err = capsys.readouterr().err
    assert "calibration.json" in err and "available: eer, p_target=0.01" in err


def test_verify_calibrates_with_the_durations_when_stage_5_did(deployed, capsys, tmp_path):
    """eval.calibration_durations: the LLR has a term in the log durations of the pair."""
    export = Path(shutil.copytree(deployed / "exp/sys/export", tmp_path / "export"))
    path = export / "calibration.json"
    content = json.loads(path.read_text())
    entry = content["backends"]["cosine_mean"]
    entry["quality_weights"] = [0.5, -0.25]
    path.write_text(json.dumps(content))
    wavs = wav_scp(deployed)
    enrol, test = "spk0-test-u00", "spk2-test-u02"  # 1.0 s and 7.3 s long
    out = verify(capsys, export / "model.onnx", wavs[enrol], wavs[test])
    score = float(out["score"].split()[0])
    expected = entry["scale"] * score + entry["offset"] + 0.5 * np.log(1.0) - 0.25 * np.log(7.3)
    assert float(out["llr"]) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("samples", [800, 8])  # 50 ms, and a truncated file
def test_audio_shorter_than_the_model_needs_is_one_line(deployed, capsys, tmp_path, model, samples):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(samples, 0.1, np.float32), 16000)
    good = list(wav_scp(deployed).values())[0]
    # The tiny model's CNN: kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2 make one frame
    # from 400 samples; computed here from the definition, not the code.
    receptive_field = 1
    for kernel, stride in reversed(
        list(zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2), strict=True))
    ):
        receptive_field = (receptive_field - 1) * stride + kernel
    sf.write(tmp_path / "just.wav", np.full(receptive_field, 0.1, np.float32), 16000)
    if samples > receptive_field:
        sf.write(short, np.full(receptive_field - 1, 0.1, np.float32), 16000)
        samples = receptive_field - 1
    assert main(["verify", str(deployed / model), good, str(short)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{short}: audio is {1000 * samples / 16000:g} ms long; the model needs at least "
        f"25 ms ({receptive_field} samples at 16000 Hz) (give a longer utterance)"
    ) in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    verify(capsys, deployed / model, good, tmp_path / "just.wav")  # the minimum embeds


@pytest.mark.parametrize("model", MODELS)
def test_silence_is_scored_with_a_warning(deployed, capsys, tmp_path, model):
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(3 * 16000, np.float32), 16000)
    wavs = list(wav_scp(deployed).values())
    for pair, warned in (((wavs[0], silence), True), ((wavs[0], wavs[1]), False)):
        assert main(["verify", str(deployed / model), *map(str, pair)]) == 0
        out, err = capsys.readouterr()
        assert out.splitlines()[-1].split()[0] == "decision"  # still scored
        assert (
            f"{silence} has no signal energy: the score and decision mean nothing" in err
        ) == warned
