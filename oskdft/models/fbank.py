"""Kaldi log Mel filter banks as the front end of a system without an SSL model
(``ssl.source: fbank``: ECAPA-TDNN on fbank, the baseline WeSpeaker and SpeechBrain train).

The features are Kaldi's ``compute-fbank`` with its defaults, as WeSpeaker computes them with
``torchaudio.compliance.kaldi.fbank``: the waveform scaled to 16-bit sample values (so
``dither`` is in those units), frames of 25 ms every 10 ms that fit in the audio
(``snip_edges``), each with its DC offset removed, pre-emphasised (0.97), multiplied by the Povey
window and zero-padded to a power-of-two FFT; the power spectrum through Mel filters from 20 Hz to
Nyquist; the log, floored at float32's epsilon. Then each utterance's mean over its frames is
subtracted (WeSpeaker's and SpeechBrain's sentence mean normalisation, no variance).

Everything from a frame to its spectrum is linear, so it is one strided convolution whose kernel
is that chain applied to each unit impulse, computed by lhotse's Kaldi layers (their
preprocessing, window and Mel filters) and ``torch.fft.rfft``. Why not those layers themselves:
neither lhotse's ``Wav2LogFilterBank`` nor torchaudio's ``fbank`` exports to ONNX (the
TorchScript-based exporter has no ``rfft``), and torchaudio's takes one utterance at a time. The
Mel filters are a 1x1 convolution rather than a matrix product so that stage 6's dynamic int8
quantisation (matrix products only) leaves the front end in float32: quantising a power spectrum
whose range spans many orders of magnitude would zero most of it. The front end has no trained
parameters; its kernels are buffers, saved with the model.

Its compute (:func:`oskdft.models.describe.macs_per_second`) is this direct DFT's, 20.1M MACs
per second of audio, plus 2.0M for 80 Mel filters; an FFT would need about a twentieth of the
first: it takes 57 of the 221 ms of a one-thread CPU training step of egs/mini's ecapa_fbank.
One path for training, evaluation and export was kept over that speed.

A padded batch gives each row the frames it has alone: a frame is made from its own samples only,
and the frame mask marks the ``1 + (length - frame) // shift`` frames of each row.

>>> front_end = FbankFrontEnd().eval()
>>> out = front_end(torch.randn(2, 16000), torch.tensor([16000, 8000]))
>>> out.hidden_states[0].shape, out.frame_mask.sum(dim=1).tolist()
(torch.Size([2, 98, 80]), [98, 48])
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from lhotse.features.kaldi.layers import Wav2Win, get_mel_banks, next_power_of_2
from torch import Tensor, nn

from oskdft.models.ecapa import uniform_weights
from oskdft.models.student import SSLOutput

# 16-bit full scale: Kaldi's and WeSpeaker's sample unit.
INT16_SCALE = 32768.0


class FbankFrontEnd(nn.Module):
    """Waveform ``[B, T]`` -> mean-normalised log Mel filter banks ``[B, frames, num_mel_bins]``
    (see the module docstring), with the interface of an SSL front end
    (:class:`~oskdft.models.student.BranchedSSL`): the features are its one hidden state.

    :param dither: Gaussian noise of this standard deviation (16-bit units) added to every frame
        in training mode only (Kaldi's and WeSpeaker's 1.0); evaluation is deterministic.
    """

    num_layers = 0  # no layers: hidden_states holds the features alone
    adapters = None
    dft_kernel: Tensor  # buffers: the DFT as a convolution, and the Mel filters
    mel_kernel: Tensor

    def __init__(
        self,
        num_mel_bins: int = 80,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        dither: float = 0.0,
        sample_rate: int = 16000,
    ):
        super().__init__()
        # Kaldi truncates the window and shift to whole samples.
        self.frame_length = int(sample_rate * frame_length_ms / 1000)
        self.frame_shift = int(sample_rate * frame_shift_ms / 1000)
        self.num_mel_bins = num_mel_bins
        self.dither = dither
        fft_length = next_power_of_2(self.frame_length)
        with warnings.catch_warnings(), torch.device("cpu"):
            # lhotse warns that snip_edges breaks its own cut durations; not used here.
            warnings.simplefilter("ignore", UserWarning)
            preprocess = Wav2Win(
                sample_rate,
                frame_length_ms / 1000,
                frame_shift_ms / 1000,
                pad_length=fft_length,
                window_type="povey",
                dither=0.0,
                snip_edges=True,
            )
        # Computed on the CPU (lhotse's Mel scale uses numpy), then moved to the device being
        # built on: the meta device too, where counting builds models.
        device = torch.get_default_device()
        with torch.no_grad(), torch.device("cpu"):
            # Row i: the preprocessed frame of a unit impulse at sample i, padded to the FFT.
            impulses, _ = preprocess(torch.eye(self.frame_length, dtype=torch.float64))
            spectra = torch.fft.rfft(impulses[:, 0], dim=-1)  # [frame_length, bins]
            kernel = torch.cat([spectra.real, spectra.imag], dim=1).T
            mel, _ = get_mel_banks(
                num_mel_bins, fft_length, float(sample_rate), low_freq=20.0, high_freq=0.0
            )
            # lhotse's filters leave out the Nyquist bin; torchaudio pads it with a zero weight.
            mel = F.pad(mel, (0, 1))
        self.register_buffer("dft_kernel", kernel[:, None, :].float().to(device))
        self.register_buffer("mel_kernel", mel[:, :, None].float().to(device))

    @property
    def hidden_size(self) -> int:
        return self.num_mel_bins

    @property
    def min_samples(self) -> int:
        """The shortest input with a frame."""
        return self.frame_length

    def forward(
        self,
        wav: Tensor,
        lengths: Optional[Tensor] = None,
        kd_branch: bool = False,
        num_kd_rows: int = 0,
    ) -> SSLOutput:
        """The features of ``[B, T]`` audio as :class:`SSLOutput` (one hidden state).

        :param lengths: valid samples per row of a zero-padded batch.
        :param num_kd_rows: ignored: a filter bank has one branch, the same for every row.
        """
        if kd_branch:
            raise ValueError("a filter bank has no hidden states to distil (set kd.loss: none)")
        # In float32 under any autocast: the power spectrum spans more than bf16 resolves.
        device = wav.device.type
        with (
            torch.autocast(device, enabled=False)
            if torch.amp.is_autocast_available(device)
            else contextlib.nullcontext()
        ):  # the meta device has no autocast
            features = self._log_mel(wav.float()).transpose(1, 2)  # [B, frames, mels]
        mask = None
        if lengths is not None:
            valid = (
                torch.div(lengths - self.frame_length, self.frame_shift, rounding_mode="floor") + 1
            )
            frames = torch.arange(features.shape[1], device=wav.device)
            mask = frames[None, :] < valid[:, None]
        return SSLOutput((self._subtract_mean(features, mask),), None, mask)

    def _log_mel(self, wav: Tensor) -> Tensor:
        """``[B, mels, frames]`` log Mel energies."""
        samples = wav[:, None, :] * INT16_SCALE
        if self.training and self.dither > 0:
            # On the samples, as lhotse dithers (Kaldi dithers each frame on its own): the
            # frames are cut by the convolution.
            samples = samples + self.dither * torch.randn_like(samples)
        spectrum = F.conv1d(samples, self.dft_kernel, stride=self.frame_shift)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        energies = F.conv1d(power, self.mel_kernel)
        return energies.clamp(min=torch.finfo(torch.float32).eps).log()

    @staticmethod
    def _subtract_mean(features: Tensor, mask: Optional[Tensor]) -> Tensor:
        """Each row minus its mean over its valid frames; padded frames come out as zeros."""
        if mask is None:
            return features - features.mean(dim=1, keepdim=True)
        weights = uniform_weights(mask).transpose(1, 2)  # [B, frames, 1]
        mean = (features * weights).sum(dim=1, keepdim=True)
        return (features - mean) * mask[..., None]
