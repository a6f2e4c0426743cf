"""The synthetic corpus of egs/mini: voices, utterances, channels, noise, music, babble and
room impulse responses, made with numpy alone and written in VoxCeleb layout.

Speech is a source-filter model evaluated in the short-time Fourier domain (16 ms hop):
a glottal pulse train (Rosenberg pulse shape, per-frame F0) plus pitch-synchronous aspiration
noise, shaped by a cascade of five formant resonances whose tracks glide between phone targets,
plus band-shaped frication noise for fricatives and stop bursts. A speaker (:class:`Voice`) is
fixed by what survives a change of microphone: F0 level and range, vocal-tract length (all
formants scaled), personal vowel targets, glottal pulse shape, breathiness, jitter, formant
bandwidths, speaking rate, and a spectral tilt.

A recording session (:class:`Channel`) then applies what a microphone and a room do: optional
reverberation, background noise at an SNR, a random smooth equaliser (tilt, peaks and notches,
band limits) and a level. The channel moves an utterance's mean spectrum about as much as a change
of speaker does, so the mean MFCC or log-mel of an utterance is a poor speaker embedding
(egs/mini/README.md gives its EER), while the per-frame cues above let a trained model tell
speakers apart.

Everything is a pure function of a seed: each speaker, session and file draws from its own
``numpy.random.default_rng([seed, kind, index...])``, so the corpus is the same bytes on
every run and does not depend on the order of generation.
"""

from __future__ import annotations

import logging
import string
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import soundfile as sf

from oskdft.data.kaldi_dir import Trial, replace_data_dir
from oskdft.layout import SAMPLE_RATE
from oskdft.utils.io import Pathlike, atomic_dir

logger = logging.getLogger(__name__)

HOP = 256  # control rate of the synthesiser: one frame every 16 ms
WIN = 512  # analysis window (32 ms)
NFFT = 1024  # zero padding, so a formant's ringing does not wrap around the frame
FREQS = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE).astype(np.float32)
# A periodic Hann window at a half-window hop overlap-adds to exactly 1.
WINDOW = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
_LOG2_FREQS = np.log2(np.maximum(FREQS, 100.0))  # spectral shapes are flat below 100 Hz
_KHZ = FREQS / 1000.0
_KHZ_SQUARED = _KHZ * _KHZ


def _frames(ms: float) -> int:
    """Number of control frames in ``ms`` milliseconds (at least one)."""
    return max(1, int(round(ms * SAMPLE_RATE / 1000.0 / HOP)))


# Reference formants F1..F5 (Hz) of an average adult male vocal tract (Peterson and Barney).
VOWELS = np.array(
    [
        [270, 2290, 3010, 3500, 4500],  # i
        [390, 1990, 2550, 3500, 4500],  # I
        [530, 1840, 2480, 3500, 4500],  # E
        [660, 1720, 2410, 3500, 4500],  # ae
        [730, 1090, 2440, 3500, 4500],  # A
        [570, 840, 2410, 3500, 4500],  # O
        [440, 1020, 2240, 3500, 4500],  # U
        [300, 870, 2240, 3500, 4500],  # u
        [640, 1190, 2390, 3500, 4500],  # V
        [490, 1350, 1690, 3500, 4500],  # 3r
    ],
    dtype=float,
)
BANDWIDTHS = np.array([70.0, 90.0, 130.0, 170.0, 250.0])


@dataclass(frozen=True)
class Consonant:
    """A consonant class: where its formants point (the locus), which sources it uses
    and how long it lasts."""

    locus_f2: float  # F2 target (Hz, male reference) the neighbouring vowels glide towards
    voicing: float  # gain of the glottal source
    frication: float  # gain of the frication noise
    fric_center: float  # centre (Hz) of the frication band
    fric_octaves: float  # width of the frication band
    aspiration: float  # gain of noise through the vocal tract (h, voiceless stop release)
    ms: Tuple[float, float]  # duration range
    closure_ms: float = 0.0  # silent closure before a stop burst
    nasal: bool = False


CONSONANTS = (
    Consonant(900, 0.35, 0.0, 0.0, 1.0, 0.0, (50, 90), nasal=True),  # m
    Consonant(1700, 0.35, 0.0, 0.0, 1.0, 0.0, (50, 90), nasal=True),  # n
    Consonant(1800, 0.0, 0.5, 5500, 0.6, 0.0, (80, 140)),  # s
    Consonant(2000, 0.0, 0.4, 3000, 0.7, 0.0, (80, 140)),  # sh
    Consonant(900, 0.0, 0.12, 4500, 2.5, 0.0, (70, 120)),  # f
    Consonant(1800, 0.25, 0.3, 5500, 0.6, 0.0, (60, 110)),  # z
    Consonant(900, 0.25, 0.08, 4500, 2.5, 0.0, (50, 90)),  # v
    Consonant(1500, 0.0, 0.0, 0.0, 1.0, 0.25, (50, 90)),  # h
    Consonant(900, 0.0, 0.6, 1500, 1.5, 0.2, (20, 40), closure_ms=60),  # p
    Consonant(1800, 0.0, 0.7, 4000, 1.2, 0.2, (20, 40), closure_ms=55),  # t
    Consonant(2300, 0.0, 0.7, 2500, 1.0, 0.2, (25, 45), closure_ms=55),  # k
    Consonant(900, 0.1, 0.4, 1500, 1.5, 0.0, (10, 20), closure_ms=50),  # b
    Consonant(1800, 0.1, 0.5, 4000, 1.2, 0.0, (10, 20), closure_ms=45),  # d
    Consonant(1100, 0.7, 0.0, 0.0, 1.0, 0.0, (50, 80)),  # w, r, l: a voiced glide
)


@dataclass(frozen=True)
class Voice:
    """A speaker: the parameters that make one synthetic voice differ from another."""

    f0_hz: float  # median F0
    f0_range_semitones: float  # spread of the intonation around it
    jitter_semitones: float  # frame-to-frame F0 perturbation
    vtl_scale: float  # formant scaling: shorter vocal tract, higher formants
    formant_scales: np.ndarray  # (5,) personal deviation of each formant from the scaling
    vowel_offsets: np.ndarray  # (vowels, 3) personal shift of each vowel's F1..F3
    bandwidth_scale: float  # formant bandwidths (wider: duller, breathier voice)
    open_quotient: float  # fraction of the glottal cycle the folds are open
    speed_quotient: float  # opening / closing time: the glottal pulse's skew
    breathiness: float  # aspiration noise relative to the voiced source
    tilt_db_per_octave: float  # source spectral tilt around 1 kHz
    rate: float  # speaking rate (1 = reference phone durations)


def random_voice(rng: np.random.Generator) -> Voice:
    """Draw a speaker. About half are "female": higher F0 and a shorter vocal tract,
    with personal variation around both so that F0 and formants are not tied."""
    female = rng.random() < 0.5
    f0 = np.exp(rng.normal(np.log(210.0 if female else 115.0), 0.2))
    return Voice(
        f0_hz=float(f0),
        f0_range_semitones=float(rng.uniform(0.7, 2.5)),
        jitter_semitones=float(rng.uniform(0.02, 0.25)),
        vtl_scale=float(rng.normal(1.16 if female else 1.0, 0.06)),
        formant_scales=np.exp(rng.normal(0.0, 0.04, 5)),
        vowel_offsets=np.exp(rng.normal(0.0, 0.06, (len(VOWELS), 3))),
        bandwidth_scale=float(rng.uniform(0.7, 1.6)),
        open_quotient=float(rng.uniform(0.4, 0.85)),
        speed_quotient=float(rng.uniform(1.2, 4.0)),
        breathiness=float(np.exp(rng.uniform(np.log(0.02), np.log(0.4)))),
        tilt_db_per_octave=float(rng.uniform(-3.0, 3.0)),
        rate=float(rng.uniform(0.8, 1.25)),
    )


@dataclass
class _Controls:
    """Synthesis controls of a phone sequence, one entry per segment."""

    formants: List[np.ndarray] = field(default_factory=list)  # (5,) Hz
    # voicing, frication, frication centre (Hz), frication width (octaves), aspiration, nasality
    sources: List[Tuple[float, ...]] = field(default_factory=list)
    frames: List[int] = field(default_factory=list)

    def add(
        self,
        formants: np.ndarray,
        ms: float,
        voicing: float = 0.0,
        frication: float = 0.0,
        fric_center: float = 3000.0,
        fric_octaves: float = 1.0,
        aspiration: float = 0.0,
        nasal: float = 0.0,
    ) -> None:
        self.formants.append(formants)
        self.sources.append((voicing, frication, fric_center, fric_octaves, aspiration, nasal))
        self.frames.append(_frames(ms))

    def total(self) -> int:
        return sum(self.frames)


def _smooth(track: np.ndarray, frames: int) -> np.ndarray:
    """Hann-smooth each column of a (T, k) track over ``frames`` frames (edges held)."""
    kernel = np.hanning(frames + 2)[1:-1]
    kernel /= kernel.sum()
    pad = frames // 2
    padded = np.pad(track, ((pad, frames - 1 - pad), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, frames, axis=0)
    return windows @ kernel


def _phone_controls(voice: Voice, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Frame controls of a random phone sequence: (T, 11) = F1..F5, voicing, frication,
    frication centre, frication width, aspiration, nasality."""
    neutral = VOWELS.mean(axis=0) * voice.vtl_scale * voice.formant_scales
    controls = _Controls()
    controls.add(neutral, rng.uniform(80, 250))  # leading silence
    while controls.total() < n_frames:
        if rng.random() < 0.08:  # a pause between words
            controls.add(neutral, rng.uniform(80, 250) / voice.rate)
        for _ in range(rng.choice([0, 1, 1, 2])):  # onset consonants
            _add_consonant(controls, CONSONANTS[rng.integers(len(CONSONANTS))], voice, rng)
        vowel = rng.integers(len(VOWELS))
        targets = VOWELS[vowel] * voice.vtl_scale * voice.formant_scales
        targets[:3] *= voice.vowel_offsets[vowel]
        controls.add(targets, rng.uniform(70, 200) / voice.rate, voicing=1.0)
        if rng.random() < 0.4:  # coda consonant
            _add_consonant(controls, CONSONANTS[rng.integers(len(CONSONANTS))], voice, rng)
    counts = np.array(controls.frames)
    formants = np.repeat(np.array(controls.formants), counts, axis=0)[:n_frames]
    sources = np.repeat(np.array(controls.sources), counts, axis=0)[:n_frames]
    # Coarticulation: formants glide over ~50 ms; sources ramp over ~25 ms (no clicks).
    return np.concatenate([_smooth(formants, _frames(50)), _smooth(sources, _frames(25))], axis=1)


def _add_consonant(
    controls: _Controls, c: Consonant, voice: Voice, rng: np.random.Generator
) -> None:
    formants = VOWELS.mean(axis=0).copy()
    formants[0], formants[1] = 300.0, c.locus_f2
    formants = formants * voice.vtl_scale * voice.formant_scales
    if c.closure_ms:
        controls.add(formants, c.closure_ms / voice.rate, voicing=c.voicing * 0.3)
    controls.add(
        formants,
        rng.uniform(*c.ms) / voice.rate,
        voicing=c.voicing,
        frication=c.frication,
        fric_center=c.fric_center * voice.vtl_scale,
        fric_octaves=c.fric_octaves,
        aspiration=c.aspiration,
        nasal=float(c.nasal),
    )


def _glottal_flow(phase: np.ndarray, open_quotient: float, speed_quotient: float) -> np.ndarray:
    """Rosenberg glottal flow at cycle phase ``phase`` in [0, 1): a raised-cosine opening,
    a quarter-cosine closing, then closed. The skew (speed quotient) and the open fraction
    shape the harmonics' slope, one of the voice's signatures."""
    opening = open_quotient * speed_quotient / (1.0 + speed_quotient)
    closing = open_quotient - opening
    flow = np.zeros_like(phase)
    rising = phase < opening
    flow[rising] = 0.5 - 0.5 * np.cos(np.pi * phase[rising] / opening)
    falling = ~rising & (phase < open_quotient)
    flow[falling] = np.cos(0.5 * np.pi * (phase[falling] - opening) / closing)
    return flow


def _vocal_tract(formants: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Complex response (T, F) of a cascade of analog formant resonances at :data:`FREQS`."""
    squared = ((formants / 1000.0) ** 2).astype(np.float32)  # kHz keeps float32 in range
    bandwidths = (bandwidths / 1000.0).astype(np.float32)
    denominator = np.ones((len(formants), len(FREQS)), np.complex64)
    pole = np.empty_like(denominator)
    for k in range(formants.shape[1]):
        np.subtract(squared[:, k, None], _KHZ_SQUARED, out=pole.real)
        np.multiply(bandwidths[:, k, None], _KHZ, out=pole.imag)
        denominator *= pole
    return np.prod(squared, axis=1)[:, None] / denominator


def _stft(x: np.ndarray, frames: Union[slice, np.ndarray] = slice(None)) -> np.ndarray:
    """Windowed spectra of ``x``: the frames selected by ``frames`` (default: all)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP]
    return np.fft.rfft(windows[frames] * WINDOW, NFFT)


def _overlap_add(spectra: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_stft` (after filtering): overlap-add the zero-padded frames."""
    frames = np.fft.irfft(spectra, NFFT)
    n_frames, blocks = len(frames), NFFT // HOP
    out = np.zeros((n_frames + blocks, HOP))
    for b, block in enumerate(frames.reshape(n_frames, blocks, HOP).transpose(1, 0, 2)):
        out[b : b + n_frames] += block
    return out.reshape(-1)


def synthesize_speech(
    voice: Voice, seconds: float, rng: np.random.Generator, f0_shift_semitones: float = 0.0
) -> np.ndarray:
    """A clean utterance of ``voice`` (16 kHz, float, RMS 0.1) with random phone content.

    :param f0_shift_semitones: offset of the whole F0 contour (a session's mood or effort).
    """
    n = int(round(seconds * SAMPLE_RATE))
    n_frames = (n + WIN) // HOP + 1  # frames over the signal padded by WIN on both sides
    controls = _phone_controls(voice, n_frames, rng)
    formants = controls[:, :5]
    voicing, frication, fric_center, fric_octaves, aspiration, nasal = controls[:, 5:].T

    # F0: declination, slow intonation, jitter; sample-accurate phase from the frame track.
    intonation = _smooth(rng.standard_normal((n_frames, 1)), _frames(200))[:, 0]
    intonation *= voice.f0_range_semitones / (intonation.std() + 1e-9)
    semitones = (
        f0_shift_semitones
        + intonation
        + np.linspace(1.0, -1.0, n_frames)
        + rng.normal(0.0, voice.jitter_semitones, n_frames)
    )
    frame_centres = np.arange(n_frames) * HOP + WIN // 2  # in the signal padded by WIN
    samples = np.arange(n + 2 * WIN)
    f0 = np.interp(samples, frame_centres, voice.f0_hz * 2.0 ** (semitones / 12.0))
    flow = _glottal_flow(
        np.cumsum(f0 / SAMPLE_RATE) % 1.0, voice.open_quotient, voice.speed_quotient
    )
    # Lip radiation differentiates the flow; per unit of cycle phase, so loudness ignores F0.
    pulses = np.diff(flow, prepend=0.0) * SAMPLE_RATE / f0
    pulses /= np.sqrt(np.mean(pulses**2)) + 1e-9
    breath = rng.standard_normal(len(flow)) * (0.25 + flow)  # aspiration, pitch-synchronous
    breath_gain = aspiration + voicing * voice.breathiness
    excitation = pulses * np.interp(samples, frame_centres, voicing) + breath * np.interp(
        samples, frame_centres, breath_gain
    )

    # Excitation through the vocal tract, plus frication noise through its band, per frame.
    bandwidths = BANDWIDTHS * voice.bandwidth_scale * (1.0 + nasal[:, None])
    tilt = 10.0 ** (voice.tilt_db_per_octave * (_LOG2_FREQS - np.log2(1000.0)) / 20.0)
    spectra = _vocal_tract(formants, bandwidths)
    spectra *= tilt
    spectra *= _stft(excitation)
    active = frication > 1e-3
    octaves = (_LOG2_FREQS - np.log2(fric_center[active, None])) / (
        0.5 * fric_octaves[active, None]
    )
    spectra[active] += _stft(rng.standard_normal(len(flow)), active) * (
        frication[active, None] * np.exp(-0.5 * octaves**2)
    )
    speech = _overlap_add(spectra)[WIN : WIN + n]
    return speech * (0.1 / (np.sqrt(np.mean(speech**2)) + 1e-9))


@dataclass(frozen=True)
class Channel:
    """A recording session: microphone, room, background and level."""

    tilt_db_per_octave: float
    peaks: np.ndarray  # (k, 3): centre Hz, width in octaves, gain dB of equaliser bumps
    low_cut_hz: float
    high_cut_hz: float
    level_db: float  # RMS of the recording, dB full scale
    snr_db: float
    noise_tilt_db_per_octave: float
    hum_hz: float  # mains hum fundamental, 0 for none
    rir: Optional[np.ndarray]  # room impulse response, None for a dry room


def random_channel(rng: np.random.Generator) -> Channel:
    """Draw a session's channel. Its equaliser and background move an utterance's mean
    spectrum as much as a change of speaker does (egs/mini/README.md measures the effect)."""
    n_peaks = rng.integers(3, 7)
    peaks = np.stack(
        [
            np.exp(rng.uniform(np.log(150.0), np.log(7000.0), n_peaks)),
            rng.uniform(0.3, 1.5, n_peaks),
            rng.normal(0.0, 3.0, n_peaks),
        ],
        axis=1,
    )
    return Channel(
        tilt_db_per_octave=float(rng.normal(0.0, 1.5)),
        peaks=peaks,
        low_cut_hz=float(np.exp(rng.uniform(np.log(40.0), np.log(200.0)))),
        high_cut_hz=float(rng.choice([6500.0, 7800.0, 7800.0])),
        level_db=float(rng.uniform(-32.0, -16.0)),
        snr_db=float(rng.uniform(15.0, 35.0)),
        noise_tilt_db_per_octave=float(rng.uniform(-6.0, 1.0)),
        hum_hz=float(rng.choice([0.0, 0.0, 50.0, 60.0])),
        rir=synthesize_rir(rng, rt60_range=(0.15, 0.45)) if rng.random() < 0.3 else None,
    )


def equaliser_db(channel: Channel, freqs: np.ndarray) -> np.ndarray:
    """The channel's magnitude response in dB at ``freqs``: tilt, bumps and band limits."""
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    db = channel.tilt_db_per_octave * octaves
    for centre, width, gain in channel.peaks:
        db += gain * np.exp(-0.5 * ((octaves - np.log2(centre / 1000.0)) / width) ** 2)
    f = np.maximum(freqs, 1.0)
    db -= 10.0 * np.log10(1.0 + (channel.low_cut_hz / f) ** 4)  # 2nd-order high-pass
    db -= 10.0 * np.log10(1.0 + (f / channel.high_cut_hz) ** 8)  # 4th-order low-pass
    return db


def _fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n``. FFTs of such lengths are fast, other (e.g. prime)
    lengths many times slower, and the next power of two can double the work.

    >>> _fft_size(1025), _fft_size(66048)
    (1080, 67500)
    """
    best = 1 << (n - 1).bit_length()
    power3 = 1
    while power3 < best:
        odd = power3
        while odd < best:
            best = min(best, odd << (-(-n // odd) - 1).bit_length())
            odd *= 5
        power3 *= 3
    return best


def _gain_at(m: int, db: np.ndarray) -> np.ndarray:
    """Linear gains at the ``rfft`` bins of an ``m``-point FFT, from dB values at
    :data:`FREQS` (smooth responses need no finer grid)."""
    return 10.0 ** (np.interp(np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE), FREQS, db) / 20.0)


def _coloured_noise(n: int, tilt_db_per_octave: float, rng: np.random.Generator) -> np.ndarray:
    m = _fft_size(n)
    shape = _gain_at(m, tilt_db_per_octave * (_LOG2_FREQS - np.log2(1000.0)))
    spectrum = (rng.standard_normal(len(shape)) + 1j * rng.standard_normal(len(shape))) * shape
    noise = np.fft.irfft(spectrum, m)[:n]
    return noise / (noise.std() + 1e-12)


def _mains_hum(n: int, hum_hz: float) -> np.ndarray:
    """Five harmonics of the mains frequency, unit power. One second of it repeats exactly
    (50 or 60 Hz), so only one second is computed."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    harmonics = np.arange(1, 6)[:, None]
    second = np.sum(np.sin(2 * np.pi * hum_hz * harmonics * t) / harmonics, axis=0)
    return np.resize(second / second.std(), n)


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution by FFT, truncated to ``len(x)``."""
    m = _fft_size(len(x) + len(h) - 1)
    return np.fft.irfft(np.fft.rfft(x, m) * np.fft.rfft(h, m), m)[: len(x)]


def apply_channel(speech: np.ndarray, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """Record ``speech`` through ``channel``: mains hum, reverb, background noise, equaliser
    and level, all in one FFT pass. Each call draws fresh noise and jitters SNR and level."""
    n = len(speech)
    noise_power = np.mean(speech**2) * 10.0 ** (-(channel.snr_db + rng.normal(0.0, 2.0)) / 10)
    x = speech
    if channel.hum_hz:
        x = speech + np.sqrt(noise_power) * _mains_hum(n, channel.hum_hz)
    reverb = len(channel.rir) if channel.rir is not None else 0
    m = _fft_size(n + reverb + 2048)  # room for the reverb tail and the equaliser's response
    spectrum = np.fft.rfft(x, m)
    if channel.rir is not None:
        spectrum *= np.fft.rfft(channel.rir, m)
    # Noise drawn as a coloured spectrum; Parseval gives its power per sample after the irfft.
    shape = _gain_at(m, channel.noise_tilt_db_per_octave * (_LOG2_FREQS - np.log2(1000.0)))
    noise = (rng.standard_normal(len(shape)) + 1j * rng.standard_normal(len(shape))) * shape
    spectrum += noise * np.sqrt(noise_power * m * m / (2.0 * np.sum(np.abs(noise) ** 2)))
    y = np.fft.irfft(spectrum * _gain_at(m, equaliser_db(channel, FREQS)), m)[:n]
    level_db = channel.level_db + rng.normal(0.0, 1.5)
    return y * (10.0 ** (level_db / 20.0) / (np.sqrt(np.mean(y**2)) + 1e-12))


def synthesize_rir(
    rng: np.random.Generator, rt60_range: Tuple[float, float] = (0.2, 0.9)
) -> np.ndarray:
    """A room impulse response: direct path, a few early reflections, then an exponentially
    decaying noise tail whose high frequencies die out faster. Peak 1 at the direct path."""
    rt60 = rng.uniform(*rt60_range)
    n = int(rt60 * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    delay = rng.uniform(0.001, 0.005)
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * (t > delay)
    # Air and walls absorb high frequencies: a gentle low-pass on the tail.
    m = _fft_size(n)
    freqs = np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE)
    lowpass = np.sqrt(1.0 + (freqs / rng.uniform(2000, 6000)) ** 2)
    tail = np.fft.irfft(np.fft.rfft(tail, m) / lowpass, m)[:n]
    rir = tail * rng.uniform(0.05, 0.3) / (np.abs(tail).max() + 1e-12)
    reflections = (delay + rng.uniform(0.002, 0.05, rng.integers(4, 10))) * SAMPLE_RATE
    rir[reflections.astype(int)] += rng.uniform(-0.6, 0.6, len(reflections))
    rir[int(delay * SAMPLE_RATE)] = 1.0
    return rir / np.abs(rir).max()


def _stationary_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Fan, air conditioning, rain: coloured noise."""
    return _coloured_noise(n, rng.uniform(-9.0, 3.0), rng)


def _modulated_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Traffic, wind: coloured noise with a slow random loudness contour."""
    frames = n // HOP + 2
    contour = _smooth(rng.standard_normal((frames, 1)), int(rng.integers(20, 120)))[:, 0]
    envelope = np.exp(2.0 * contour / (contour.std() + 1e-9))
    envelope = np.interp(np.arange(n), np.arange(frames) * HOP, envelope)
    return _coloured_noise(n, rng.uniform(-9.0, 0.0), rng) * envelope


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Engines and appliances: a harmonic drone with a wandering pitch, plus a little hiss."""
    f0 = rng.uniform(30.0, 300.0) * 2.0 ** (np.cumsum(rng.normal(0.0, 0.002, n)) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    harmonics = np.arange(1, 9)[:, None]
    weights = rng.uniform(0.0, 1.0, (8, 1)) / harmonics
    drone = np.sum(weights * np.sin(harmonics * phase), axis=0)
    return drone / drone.std() + 0.2 * _coloured_noise(n, -3.0, rng)


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    """Typing, dishes, footsteps: sparse decaying impulses over a quiet floor."""
    events = np.zeros(n)
    times = rng.integers(0, n, rng.integers(5, 60))
    events[times] = rng.uniform(0.3, 1.0, len(times)) * rng.choice([-1.0, 1.0], len(times))
    ring = rng.standard_normal(400) * np.exp(-np.arange(400) / rng.uniform(20.0, 120.0))
    return _convolve(events, ring) + 0.02 * _coloured_noise(n, -3.0, rng)


NOISE_KINDS: Tuple[Callable[[int, np.random.Generator], np.ndarray], ...] = (
    _stationary_noise,
    _modulated_noise,
    _hum,
    _clicks,
)


def synthesize_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A MUSAN-like noise recording of one random kind (stationary, modulated, hum, clicks)."""
    n = int(round(seconds * SAMPLE_RATE))
    noise = NOISE_KINDS[rng.integers(len(NOISE_KINDS))](n, rng)
    return 0.1 * noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def synthesize_music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A MUSAN-like music clip: a melody and a bass line in one key and tempo, each with its
    own harmonic timbre and note envelope, and sometimes a noise-burst drum on the beat."""
    n = int(round(seconds * SAMPLE_RATE))
    beat = int(SAMPLE_RATE * 60.0 / rng.uniform(60.0, 180.0))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12]) + rng.integers(0, 12)
    music = np.zeros(n)
    for octave_base, beats_per_note in (
        (rng.integers(57, 70), rng.choice([1, 2])),
        (rng.integers(33, 45), rng.choice([2, 4])),
    ):
        harmonics = np.arange(1, 9)[:, None]
        timbre = rng.uniform(0.0, 1.0, (8, 1)) / harmonics ** rng.uniform(0.5, 2.0)
        decay = rng.uniform(2.0, 10.0)
        length = beat * beats_per_note
        t = np.arange(length) / SAMPLE_RATE
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-decay * t)
        for start in range(0, n, length):
            midi = octave_base + rng.choice(scale)
            f0 = 440.0 * 2.0 ** ((midi - 69) / 12.0)
            tone = np.sum(timbre * np.sin(2 * np.pi * f0 * harmonics * t), axis=0) * envelope
            stop = min(n, start + length)
            music[start:stop] += tone[: stop - start]
    if rng.random() < 0.6:
        hit = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 200.0)
        beats = np.zeros(n)
        beats[::beat] = 1.0
        music += 0.5 * _convolve(beats, hit)
    return 0.1 * music / (np.sqrt(np.mean(music**2)) + 1e-12)


@dataclass(frozen=True)
class MiniCorpusSpec:
    """Sizes of the synthetic corpus (the defaults are egs/mini's)."""

    train_speakers: int = 64
    test_speakers: int = 40
    # Index of the first training speaker (test speakers follow). Speaker k's voice and sessions
    # draw from streams keyed by k, so a corpus starting at another index (egs/mini_pretrain's
    # pool) has speakers disjoint from egs/mini's, by construction, with ids of their own.
    first_speaker: int = 0
    sessions: int = 3  # per speaker, each with its own channel
    utts_per_session: Tuple[int, int] = (3, 5)  # inclusive range
    utt_seconds: Tuple[float, float] = (2.0, 5.0)
    babble_files: int = 20  # each by a further speaker, in neither train nor test
    noise_files: int = 20
    music_files: int = 20
    rir_files: int = 20
    aug_seconds: Tuple[float, float] = (5.0, 10.0)  # noise, music and babble files
    # Per speaker set: files written stereo (first channel = the utterance) and files written
    # at another sample rate, so the pipeline's conversion rule runs end to end.
    stereo_files: int = 2
    resampled_files: int = 2
    other_sample_rate: int = 22050
    # Different-speaker trials drawn per target trial: the targets (every cross-session pair)
    # are few, and the list grows by non-targets without synthesising more audio.
    nontargets_per_target: int = 10


# Stream keys for numpy's SeedSequence: every object draws from its own generator.
_VOICE, _SESSION, _UTTERANCE, _SOURCE, _LAYOUT = range(5)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def speaker_id(index: int) -> str:
    """VoxCeleb-style speaker id.

    >>> speaker_id(0), speaker_id(68)
    ('id10001', 'id10069')
    """
    return f"id{10001 + index}"


def _session_id(rng: np.random.Generator) -> str:
    """An 11-character YouTube-like id (letters and digits only, so ids split on '-')."""
    alphabet = np.array(list(string.ascii_letters + string.digits))
    return "".join(rng.choice(alphabet, 11))


@dataclass(frozen=True)
class _Utterance:
    """One utterance to synthesise: its ids, where it goes, and what makes its sound."""

    utt_id: str  # <spk>-<session>-<nnnnn>
    speaker: str
    session: str
    path: Path  # relative to the corpus dir
    voice: Voice
    channel: Channel
    f0_shift: float
    keys: Tuple[int, ...]  # its random stream


def _plan_speakers(first: int, count: int, spec: MiniCorpusSpec, seed: int) -> List[_Utterance]:
    """The utterances of speakers ``first .. first + count - 1``, in id order."""
    plan = []
    for k in range(first, first + count):
        spk, voice = speaker_id(k), random_voice(_rng(seed, _VOICE, k))
        for s in range(spec.sessions):
            rng = _rng(seed, _SESSION, k, s)
            session, channel = _session_id(rng), random_channel(rng)
            f0_shift = rng.normal(0.0, 0.3)  # the speaker's mood or effort that day
            low, high = spec.utts_per_session
            for u in range(1, rng.integers(low, high + 1) + 1):
                plan.append(
                    _Utterance(
                        f"{spk}-{session}-{u:05d}",
                        spk,
                        session,
                        Path("wav", spk, session, f"{u:05d}.wav"),
                        voice,
                        channel,
                        f0_shift,
                        (seed, _UTTERANCE, k, s, u),
                    )
                )
    return plan


def resample(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Band-limited resampling of 16 kHz audio to ``sample_rate`` (FFT zero padding)."""
    n_out = int(round(len(audio) * sample_rate / SAMPLE_RATE))
    return np.fft.irfft(np.fft.rfft(audio), n_out) * (n_out / len(audio))


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")


def _write_utterances(
    plan: List[_Utterance],
    root: Path,
    spec: MiniCorpusSpec,
    layout_rng: np.random.Generator,
    num_workers: int = 1,
) -> None:
    """Synthesise and record every planned utterance into ``root``, in ``num_workers``
    processes (the same bytes: each utterance draws from its own seed). A few, drawn by
    ``layout_rng``, are written stereo or at ``spec.other_sample_rate``."""
    odd = layout_rng.choice(len(plan), spec.stereo_files + spec.resampled_files, replace=False)
    stereo, resampled = set(odd[: spec.stereo_files]), set(odd[spec.stereo_files :])

    def kind(i: int) -> str:
        return "stereo" if i in stereo else "resampled" if i in resampled else ""

    jobs = [(utt, root, spec, kind(i)) for i, utt in enumerate(plan)]
    if num_workers <= 1:
        for job in jobs:
            _write_utterance(*job)
        return
    with ProcessPoolExecutor(num_workers, mp_context=get_context("fork")) as pool:
        # list(): a worker's exception is raised here, after the others stopped.
        list(pool.map(_write_utterance, *zip(*jobs, strict=True), chunksize=8))


def _write_utterance(utt: _Utterance, root: Path, spec: MiniCorpusSpec, kind: str) -> None:
    rng = np.random.default_rng(utt.keys)
    speech = synthesize_speech(utt.voice, rng.uniform(*spec.utt_seconds), rng, utt.f0_shift)
    audio = apply_channel(speech, utt.channel, rng)
    if kind == "stereo":  # second channel: another, quieter and noisier microphone
        second = 0.5 * audio + 0.01 * rng.standard_normal(len(audio))
        _write_wav(root / utt.path, np.stack([audio, second], axis=1))
    elif kind == "resampled":
        rate = spec.other_sample_rate
        _write_wav(root / utt.path, resample(audio, rate), rate)
    else:
        _write_wav(root / utt.path, audio)


Synthesiser = Callable[[np.random.Generator], np.ndarray]


def _source_makers(spec: MiniCorpusSpec) -> Dict[str, Tuple[str, str, int, Synthesiser]]:
    """Augmentation sources: data dir -> (folder, file id prefix, number of files, synthesiser)."""

    def seconds(rng: np.random.Generator) -> float:
        return rng.uniform(*spec.aug_seconds)

    return {
        "musan_noise": (
            "musan/noise",
            "noise",
            spec.noise_files,
            lambda rng: synthesize_noise(seconds(rng), rng),
        ),
        "musan_music": (
            "musan/music",
            "music",
            spec.music_files,
            lambda rng: synthesize_music(seconds(rng), rng),
        ),
        # Babble sources: clean speech of further speakers, each drawn from its file's stream.
        "musan_speech": (
            "musan/speech",
            "speech",
            spec.babble_files,
            lambda rng: synthesize_speech(random_voice(rng), seconds(rng), rng),
        ),
        "rirs": ("rirs", "rir", spec.rir_files, lambda rng: 0.9 * synthesize_rir(rng)),
    }


def make_trials(
    utt2spk: Mapping[str, str],
    utt2session: Mapping[str, str],
    rng: np.random.Generator,
    nontargets_per_target: int = 1,
) -> List[Trial]:
    """Every same-speaker pair from different sessions, and ``nontargets_per_target`` times as
    many different-speaker pairs drawn without replacement, sorted. Same-session pairs are left
    out: a target trial must bridge a change of channel.

    >>> u2s = {"a-x-1": "a", "a-x-2": "a", "a-y-1": "a", "b-z-1": "b", "b-w-1": "b"}
    >>> trials = make_trials(u2s, {u: u.split("-")[1] for u in u2s}, np.random.default_rng(0))
    >>> [t for t in trials if t[2]]
    [('a-x-1', 'a-y-1', True), ('a-x-2', 'a-y-1', True), ('b-w-1', 'b-z-1', True)]
    >>> sum(not t[2] for t in trials)
    3
    """
    targets, nontargets = [], []
    for a, b in combinations(sorted(utt2spk), 2):
        if utt2spk[a] != utt2spk[b]:
            nontargets.append((a, b, False))
        elif utt2session[a] != utt2session[b]:
            targets.append((a, b, True))
    wanted = len(targets) * nontargets_per_target
    if len(nontargets) < wanted:
        raise ValueError(
            f"{wanted} non-target trials wanted but only {len(nontargets)} "
            "different-speaker pairs: use more speakers"
        )
    chosen = rng.choice(len(nontargets), wanted, replace=False)
    return sorted(targets + [nontargets[i] for i in chosen])


def prepare_mini_corpus(
    data_dir: Pathlike,
    corpus_dir: Optional[Pathlike] = None,
    seed: int = 0,
    spec: MiniCorpusSpec = MiniCorpusSpec(),
    num_workers: int = 1,
) -> None:
    """Synthesise the egs/mini corpus and write its Kaldi data dirs, the speech in
    ``num_workers`` processes (the corpus does not depend on it).

    Audio goes to ``corpus_dir`` (default ``data_dir/mini_corpus``): the speakers in VoxCeleb
    layout, ``wav/<spk>/<session>/<nnnnn>.wav``, then ``musan/{noise,music,speech}/`` and
    ``rirs/``. Data dirs (absolute paths): ``train/`` and ``test/`` (with ``trials_mini``)
    of disjoint speakers; ``musan_noise/``, ``musan_music/``, ``musan_speech/`` and ``rirs/``
    with a ``wav.scp`` only. The corpus and each data dir are built under temporary names and
    renamed into place, so an interrupted run leaves the previous ones intact and a rerun
    rebuilds them.
    """
    if spec.sessions < 2:
        raise ValueError("target trials pair different sessions: need sessions >= 2")
    data_dir = Path(data_dir).absolute()
    corpus_dir = Path(corpus_dir).absolute() if corpus_dir else data_dir / "mini_corpus"
    train = _plan_speakers(spec.first_speaker, spec.train_speakers, spec, seed)
    test = _plan_speakers(spec.first_speaker + spec.train_speakers, spec.test_speakers, spec, seed)
    layout_rng = _rng(seed, _LAYOUT)
    sources: Dict[str, Dict[str, str]] = {}  # set -> recording id -> wav path
    with atomic_dir(corpus_dir) as tmp:
        logger.info(
            "synthesising %d training and %d test speakers into %s",
            spec.train_speakers,
            spec.test_speakers,
            corpus_dir,
        )
        _write_utterances(train, tmp, spec, layout_rng, num_workers)
        _write_utterances(test, tmp, spec, layout_rng, num_workers)
        logger.info("synthesising noise, music, babble and room impulse responses")
        for key, (name, (folder, prefix, count, make)) in enumerate(_source_makers(spec).items()):
            sources[name] = {}
            for i in range(1, count + 1):
                path = Path(folder, f"{prefix}-{i:04d}.wav")
                _write_wav(tmp / path, make(_rng(seed, _SOURCE, key, i)))
                sources[name][path.stem] = str(corpus_dir / path)

    trials = make_trials(
        {u.utt_id: u.speaker for u in test},
        {u.utt_id: u.session for u in test},
        layout_rng,
        spec.nontargets_per_target,
    )
    for name, plan in (("train", train), ("test", test)):
        replace_data_dir(
            data_dir / name,
            wav_scp={u.utt_id: str(corpus_dir / u.path) for u in plan},
            utt2spk={u.utt_id: u.speaker for u in plan},
            trials={"mini": trials} if name == "test" else None,
        )
    for name, wav_scp in sources.items():
        replace_data_dir(data_dir / name, wav_scp)
    logger.info("%d trials (%d target)", len(trials), sum(t[2] for t in trials))
