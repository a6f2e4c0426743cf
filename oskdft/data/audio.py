"""Audio reading: the one place in oskdft that opens audio.

One rule for every stage:

- **channel**: multi-channel audio is reduced to its **first channel** (channel 0); the other
  channels are ignored, not averaged (a mean of microphones at different distances comb-filters
  the voice; channel 0 is the signal as recorded).
- **sample rate**: audio at any other rate is **resampled to 16 kHz on load**, by lhotse's
  ``Recording.resample`` (a windowed-sinc resampler, the same filter as torchaudio's).

Both are lhotse operations: :func:`mono_cut` turns a recording into a :class:`lhotse.MonoCut`
on channel 0 of the recording resampled to 16 kHz. Stage 0 writes its cuts that way, so whoever
loads a cut from ``data/manifests`` (training, extraction) reads exactly what :func:`load_audio`
returns for the same file.

Headers are read with soundfile, so a file must be in a format libsndfile reads (wav, flac, ogg,
mp3). Anything else (m4a, shortened sphere, ...) enters as a Kaldi piped command,
``<utt> ffmpeg -nostdin -i x.m4a -f wav - |``: such a command is **run by the shell** once when
its header is probed, and again every time its audio is loaded.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import soundfile
from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.cut import Cut

from oskdft.layout import CHANNEL, SAMPLE_RATE
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

NOT_READABLE_HINT = (
    "convert it to wav or flac, or write its wav.scp entry as a piped command such as "
    "'<utt> ffmpeg -nostdin -i <file> -f wav - |'"
)


def is_command(entry: str) -> bool:
    """Whether a wav.scp value is a Kaldi piped command (``<command> |``).

    >>> is_command("sox a.sph -t wav - |"), is_command("/data/a.wav")
    (True, False)
    """
    return entry.rstrip().endswith("|")


def recording_from_entry(recording_id: str, entry: str) -> Recording:
    """A lhotse ``Recording`` for one wav.scp value: a file path, whose header is read, or a
    piped command (``<command> |``), which is run to read the header of its output.

    The recording keeps its own rate and channels; :func:`mono_cut` applies the audio rule.

    :raises InputError: naming the file (or command) when it is missing, unreadable, or has no
        samples.
    """
    if is_command(entry):
        command = entry.rstrip()[:-1].strip()
        info = _command_info(command)
        source = AudioSource(type="command", channels=list(range(info.channels)), source=command)
    else:
        info = _file_info(entry)
        source = AudioSource(type="file", channels=list(range(info.channels)), source=entry)
    if info.frames <= 0:
        raise InputError(entry, "audio has no samples", hint="remove this utterance")
    return Recording(
        id=recording_id,
        sources=[source],
        sampling_rate=info.samplerate,
        num_samples=info.frames,
        duration=info.frames / info.samplerate,
    )


def mono_cut(
    recording: Recording,
    cut_id: Optional[str] = None,
    start: float = 0.0,
    duration: Optional[float] = None,
    supervisions: Sequence[SupervisionSegment] = (),
) -> MonoCut:
    """The cut that every stage reads: channel 0 of ``recording``, resampled to 16 kHz.

    :param cut_id: the cut id (default: the recording id).
    :param start: offset of the cut in the recording, in seconds.
    :param duration: length in seconds (default: to the end of the recording).
    :param supervisions: segments with times relative to the cut's start.
    """
    recording = recording.resample(SAMPLE_RATE)
    return MonoCut(
        id=cut_id or recording.id,
        start=start,
        duration=recording.duration - start if duration is None else duration,
        channel=CHANNEL,
        recording=recording,
        supervisions=list(supervisions),
    )


def load_audio(
    source: Union[Pathlike, Recording, Cut], sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """The samples of a file, a piped command (``"<command> |"``), a recording or a cut,
    after the audio rule: first channel, resampled to ``sample_rate``.

    :return: a float32 array of shape ``(num_samples,)`` in [-1, 1].

    >>> import tempfile, os, numpy as np, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> stereo_8k = np.zeros((800, 2), np.float32)
    >>> soundfile.write(path, stereo_8k, 8000)
    >>> load_audio(path).shape
    (1600,)
    """
    if isinstance(source, (str, os.PathLike)):
        source = recording_from_entry(Path(str(source)).stem, str(source))
    if isinstance(source, Recording):
        source = mono_cut(source)
    samples = source.resample(sample_rate).load_audio()
    return np.asarray(samples[CHANNEL], dtype=np.float32)


def _file_info(path: str):
    if not os.path.isfile(path):
        raise InputError(path, "audio file not found", hint="fix the path or remove the utterance")
    try:
        return soundfile.info(path)
    except RuntimeError as e:  # soundfile.LibsndfileError and its other read failures
        raise InputError(path, f"audio file not readable ({e})", hint=NOT_READABLE_HINT) from e


def _command_info(command: str):
    run = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if run.returncode != 0:
        stderr = run.stderr.decode(errors="replace").strip()[-300:]
        raise InputError(
            command,
            f"piped command failed with exit status {run.returncode}: {stderr}",
            hint="run the command by hand to see why",
        )
    try:
        return soundfile.info(io.BytesIO(run.stdout))
    except RuntimeError as e:
        raise InputError(
            command,
            f"the command's output is not readable audio ({e})",
            hint="make it write wav to stdout, e.g. 'sox x -t wav - |'",
        ) from e
