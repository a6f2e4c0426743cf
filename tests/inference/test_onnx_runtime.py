"""The torch-free runtime: stage 0's audio rule in numpy, wav.scp reading, onnxruntime."""

import numpy as np
import pytest
import soundfile as sf

from oskdft.data.audio import load_audio
from oskdft.inference.onnx_runtime import OnnxEmbedder, read_audio, read_wav_scp
from oskdft.utils.errors import InputError


@pytest.mark.parametrize(
    "rate,channels,num_samples",
    [
        (8000, 2, 12345),
        (22050, 1, 30001),
        (44100, 1, 88217),
        (48000, 3, 70001),
        (16000, 2, 1000),
    ],
)
def test_read_audio_gives_stage_0s_samples(tmp_path, rate, channels, num_samples):
    path = tmp_path / "a.wav"
    audio = np.random.default_rng(rate).uniform(-0.5, 0.5, (num_samples, channels))
    sf.write(path, audio, rate, subtype="PCM_16")
    expected = load_audio(str(path))
    actual = read_audio(str(path))
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=5e-5)


def test_read_audio_runs_piped_commands(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 4000), 16000)
    np.testing.assert_array_equal(read_audio(f"cat {path} |"), read_audio(str(path)))
    with pytest.raises(InputError, match="exit status 3"):
        read_audio("echo oops >&2; exit 3 |")


def test_read_audio_names_bad_files(tmp_path):
    with pytest.raises(InputError, match="missing.wav: audio file not found"):
        read_audio(str(tmp_path / "missing.wav"))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00 not audio")
    with pytest.raises(InputError, match="corrupt.wav: audio not readable"):
        read_audio(str(corrupt))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0), 16000)
    with pytest.raises(InputError, match="empty.wav: audio has no samples"):
        read_audio(str(empty))


def test_read_wav_scp_keeps_commands_and_rejects_bad_lines(tmp_path):
    path = tmp_path / "wav.scp"
    path.write_text("a-1 /x/a.wav\na-2 sox b.wav -t wav - |\n")
    assert read_wav_scp(path) == {"a-1": ("/x/a.wav", 1), "a-2": ("sox b.wav -t wav - |", 2)}
    path.write_text("a-1 /x/a.wav\na-1 /x/b.wav\n")
    with pytest.raises(InputError, match=r"wav.scp:2: duplicate utterance 'a-1'"):
        read_wav_scp(path)


def test_onnx_embedder_names_a_missing_or_broken_model(tmp_path):
    with pytest.raises(InputError, match="model.onnx: ONNX model not found"):
        OnnxEmbedder(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(InputError, match="model.onnx: not a readable ONNX model"):
        OnnxEmbedder(tmp_path / "model.onnx")
