"""oskdft.data.audio: the one audio rule (channel 0, resampled to 16 kHz) and probe errors."""

import numpy as np
import pytest
import soundfile
from lhotse import MonoCut

from oskdft.data.audio import load_audio, mono_cut, recording_from_entry
from oskdft.utils.errors import InputError


def tone(freq, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def test_16k_mono_file_is_read_unchanged(tmp_path):
    samples = tone(300, 0.5, 16000)
    soundfile.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    out = load_audio(tmp_path / "a.wav")
    assert out.dtype == np.float32 and out.shape == samples.shape
    np.testing.assert_array_equal(out, samples)


def test_stereo_8k_keeps_channel_0_resampled_to_16k(tmp_path):
    # Channel 0 holds a 440 Hz tone, channel 1 a 1000 Hz tone: the mean would hold both.
    left, right = tone(440, 1.0, 8000), tone(1000, 1.0, 8000)
    soundfile.write(tmp_path / "st.wav", np.stack([left, right], axis=1), 8000)
    out = load_audio(str(tmp_path / "st.wav"))
    assert out.shape == (16000,)
    assert peak_frequency(out, 16000) == pytest.approx(440, abs=2)
    spectrum = np.abs(np.fft.rfft(out))
    assert spectrum[1000] < 1e-2 * spectrum[440], "channel 1 must not leak in"


def test_recording_cut_and_path_read_the_same_samples(tmp_path):
    soundfile.write(tmp_path / "st.wav", np.stack([tone(440, 0.5, 22050)] * 2, axis=1), 22050)
    recording = recording_from_entry("r", str(tmp_path / "st.wav"))
    assert recording.sampling_rate == 22050 and recording.num_channels == 2
    cut = mono_cut(recording)
    assert isinstance(cut, MonoCut) and cut.channel == 0 and cut.sampling_rate == 16000
    from_path = load_audio(tmp_path / "st.wav")
    np.testing.assert_array_equal(load_audio(recording), from_path)
    np.testing.assert_array_equal(load_audio(cut), from_path)
    np.testing.assert_array_equal(cut.load_audio()[0], from_path)


def test_mono_cut_sub_range(tmp_path):
    samples = tone(200, 1.0, 16000)
    soundfile.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    cut = mono_cut(recording_from_entry("a", str(tmp_path / "a.wav")), "a-1", 0.25, 0.5)
    np.testing.assert_allclose(load_audio(cut), samples[4000:12000])


def test_piped_command_is_run(tmp_path):
    samples = tone(300, 0.25, 16000)
    soundfile.write(tmp_path / "a.wav", samples, 16000, subtype="FLOAT")
    entry = f"cat {tmp_path / 'a.wav'} |"
    recording = recording_from_entry("a", entry)
    assert recording.sources[0].type == "command"
    assert recording.num_samples == len(samples)
    np.testing.assert_array_equal(load_audio(entry), samples)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found") as e:
        recording_from_entry("a", str(tmp_path / "nope.wav"))
    assert e.value.path == str(tmp_path / "nope.wav")


def test_unreadable_file(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"this is not audio")
    with pytest.raises(InputError, match="not readable") as e:
        recording_from_entry("a", str(tmp_path / "bad.wav"))
    assert "ffmpeg" in e.value.hint


def test_zero_length_file(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="no samples"):
        recording_from_entry("a", str(tmp_path / "empty.wav"))


def test_failing_command():
    with pytest.raises(InputError, match="exit status 3"):
        recording_from_entry("a", "exit 3 |")


def test_command_that_writes_no_audio():
    with pytest.raises(InputError, match="not readable audio"):
        recording_from_entry("a", "echo hello |")
