"""Serving an exported ONNX model without torch: the audio rule in numpy, and onnxruntime.

Nothing here imports torch, or lhotse (which imports torch), so ``oskdft verify model.onnx
a.wav b.wav`` runs where only numpy, scipy, soundfile and onnxruntime are installed.

The audio rule is stage 0's (:mod:`oskdft.data.audio`), reimplemented in numpy:

- **channel**: the first channel (channel 0) of multi-channel audio; the others are ignored;
- **sample rate**: any other rate is resampled to 16 kHz with the filter lhotse uses, torchaudio's
  ``sinc_interp_hann`` (windowed sinc, Hann window, 6 zero crossings, roll-off 0.99) ported to
  numpy, and the output has lhotse's length: the duration times 16000, rounded half up.

The samples agree with :func:`oskdft.data.audio.load_audio` to float32 rounding (the tests
compare them at several rates). A wav.scp value ending in ``|`` is a Kaldi piped command, run by
the shell, whose standard output is read as audio.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import onnxruntime
import soundfile

from oskdft.layout import CHANNEL, SAMPLE_RATE
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike

# torchaudio's sinc_interp_hann defaults, which lhotse's resampler keeps.
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99

NOT_READABLE_HINT = (
    "convert it to wav or flac, or give a piped command such as "
    "'ffmpeg -nostdin -i <file> -f wav - |'"
)


def read_audio(entry: str) -> np.ndarray:
    """The samples of a file or a piped command (``"<command> |"``) after the audio rule.

    :return: float32 ``(num_samples,)`` at 16 kHz, in [-1, 1].
    :raises InputError: naming the file or command when it is missing, unreadable or empty.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> soundfile.write(path, np.zeros((800, 2), np.float32), 8000)
    >>> read_audio(path).shape
    (1600,)
    """
    source: Union[io.BytesIO, str]
    if entry.rstrip().endswith("|"):
        command = entry.rstrip()[:-1].strip()
        source = io.BytesIO(_run_command(command))
        where, hint = command, "make it write wav to stdout, e.g. 'sox x -t wav - |'"
    else:
        if not os.path.isfile(entry):
            raise InputError(entry, "audio file not found", hint="fix the path")
        source, where, hint = entry, entry, NOT_READABLE_HINT
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.SoundFileError) as e:
        raise InputError(where, f"audio not readable ({e})", hint=hint) from e
    if len(samples) == 0:
        raise InputError(where, "audio has no samples", hint="give an utterance with speech")
    return resample(samples[:, CHANNEL], rate, SAMPLE_RATE)


def resample(samples: np.ndarray, orig_rate: int, new_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``samples`` (1-D float32) at ``new_rate``, with torchaudio's windowed-sinc filter.

    The output sample ``j`` sums the input around time ``j / new_rate`` under a sinc low-pass
    (cut-off ``ROLLOFF`` x the lower Nyquist frequency) tapered by a Hann window. The filter
    repeats every ``orig / gcd`` input samples, so the whole job is one matrix product of the
    input's strided windows with ``new / gcd`` filter phases.

    >>> tone = lambda rate: np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    >>> y = resample(tone(8000), 8000, 16000)  # one second of a 440 Hz tone
    >>> len(y), bool(np.abs(y[4000:12000] - tone(16000)[4000:12000]).max() < 1e-2)
    (16000, True)
    """
    if orig_rate == new_rate:
        return samples
    gcd = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // gcd, int(new_rate) // gcd
    kernel, width = _sinc_kernel(orig, new)
    padded = np.pad(samples.astype(np.float32), (width, width + orig))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.shape[1])[::orig]
    out = (windows @ kernel.T).reshape(-1)
    # lhotse's length: the duration in samples at the new rate, rounded half up.
    num_samples = math.floor(round(len(samples) / orig_rate * new_rate, 8) + 0.5)
    return np.ascontiguousarray(out[:num_samples])


def _sinc_kernel(orig: int, new: int):
    """``(new, 2 * width + orig)`` float32 filter phases and ``width``, as torchaudio's
    ``_get_sinc_resample_kernel`` computes them (in float64, then cast)."""
    base = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base)
    offsets = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + offsets
    t = np.clip(t * base, -LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = np.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = np.sin(t) / np.where(t == 0, 1.0, t)
    sinc[t == 0] = 1.0
    return (sinc * window * base / orig).astype(np.float32), width


def _run_command(command: str) -> bytes:
    run = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if run.returncode != 0:
        stderr = run.stderr.decode(errors="replace").strip()[-300:]
        raise InputError(
            command,
            f"piped command failed with exit status {run.returncode}: {stderr}",
            hint="run the command by hand to see why",
        )
    return run.stdout


def read_wav_scp(path: Pathlike) -> Dict[str, Tuple[str, int]]:
    """``<utt> <path or command |>`` lines, in file order (Kaldi's wav.scp), as
    ``utt -> (path or command, line number)``: the line names a bad entry found later.

    :raises InputError: naming the line of a malformed or duplicate entry.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    table: Dict[str, Tuple[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise InputError(
                    path,
                    f"expected `<utt> <path or command |>`, got {line.strip()!r}",
                    line=line_no,
                )
            if fields[0] in table:
                raise InputError(
                    path,
                    f"duplicate utterance {fields[0]!r}",
                    line=line_no,
                    hint="remove one of the two lines",
                )
            table[fields[0]] = (fields[1].strip(), line_no)
    if not table:
        raise InputError(path, "no utterances")
    return table


class OnnxEmbedder:
    """An exported model in onnxruntime: ``(wav [B, T] float32, lengths [B] int64)`` ->
    ``[B, D]`` float32 embeddings (rows zero-padded beyond their lengths).

    :param threads: onnxruntime's intra-op threads (None: its default, one per core).
    """

    def __init__(self, path: Pathlike, threads: Optional[int] = None):
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if not Path(path).is_file():
            raise InputError(path, "ONNX model not found", hint="export it with stage 6")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime's own error types do not share a base class
            raise InputError(
                path,
                f"not a readable ONNX model ({str(e).strip()[:200]})",
                hint="export it again with stage 6",
            ) from e

    def __call__(self, wav: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(
            None,
            {
                "wav": np.asarray(wav, dtype=np.float32),
                "lengths": np.asarray(lengths, dtype=np.int64),
            },
        )[0]
