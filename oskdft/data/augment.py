"""Online augmentation of the student's input; the teacher always sees the clean window.

The paper's recipe (the reference code's training loader), every number in
:class:`~oskdft.config.AugmentConfig`: with probability ``prob`` a window is augmented, else it
stays clean. An augmented window gets one of ``choices`` (relative weights; the reference draws
the six uniformly):

- ``none``: unchanged (clipping and the gain envelope below may still follow);
- ``rir``: reverberation with a random room impulse response, by ``rir_mode``: ``lhotse``
  (``reverb_rir``, Kaldi's wav-reverberate: output delay-compensated and at the input's power)
  or ``original`` (:class:`UnitEnergyReverb`: the original code's full convolution with the RIR
  scaled to unit energy, cut to the window: delayed by the RIR's onset, power not restored);
- ``babble``: 3-8 different speech files averaged, the average mixed in at 13-20 dB SNR;
- ``music``: one music file at 5-25 dB; ``noise``: one noise file at 0-15 dB;
- ``speech_music``: babble, then music at its SNR relative to the babbled window.

Then, still only for augmented windows, hard clipping (p ``clip_prob``) at a random fraction of
the window's extremes, and a gain envelope (p ``gain_prob``, the reference's "easing") along
one of ``gain_curves``, drawn uniformly.

SNR is ``10 log10(mean(window^2) / mean(noise^2))`` over the window, the noise scaled to meet it
(lhotse's mixer). The reference adds 1e-4 to both mean powers inside its logarithms
(``snr_epsilon``), which is not negligible at speech levels: a noise at -40 dBFS (power 1e-4)
mixed into speech at -20 dBFS ends about 3 dB above the drawn SNR. A noise longer than the
window is cropped at a random sample, a shorter one repeated from its start, as the reference
does. Mixing and reverberation are lhotse manifests (``MixedCut``, ``reverb_rir``,
:class:`UnitEnergyReverb`), so a recipe returns a cut whose audio is the student's input.
Clipping and the envelope work on the samples: lhotse has no envelope, and its ``Clipping``
oversamples and clips symmetrically, unlike the reference. Each window is augmented on its own,
in the loader, as in the reference.

Every random choice comes from the generator the caller passes, so the dataset can make the
result a function of (seed, epoch, window) only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from lhotse import CutSet
from lhotse.augmentation import AudioTransform
from lhotse.augmentation.utils import convolve1d
from lhotse.cut import Cut, MixedCut, MixTrack
from lhotse.serialization import deserialize_item
from lhotse.utils import compute_num_samples, fastcopy

from oskdft.config import CHOICES, AugmentConfig
from oskdft.data.audio import load_audio
from oskdft.data.windows import AUG_KINDS
from oskdft.layout import aug_cuts_path
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.registry import Registry


@dataclass
class AugmentSources:
    """The cuts each kind of augmentation draws from (stage 1's ``aug_<kind>_cuts``)."""

    noise: List[Cut] = field(default_factory=list)
    music: List[Cut] = field(default_factory=list)
    speech: List[Cut] = field(default_factory=list)
    rir: List[Cut] = field(default_factory=list)

    @classmethod
    def from_data_dir(cls, data_dir: Pathlike) -> "AugmentSources":
        """Load every ``data/manifests/aug_<kind>_cuts.jsonl.gz`` that exists (a few thousand
        cuts: MUSAN and the simulated RIRs fit in memory)."""
        sources = {}
        for kind in AUG_KINDS:
            path = aug_cuts_path(data_dir, kind)
            sources[kind] = list(CutSet.from_file(path)) if Path(path).is_file() else []
        return cls(**sources)


@dataclass(frozen=True)
class Recipe:
    """One augmentation choice: the source kinds it draws from and how it makes the cut."""

    needs: Tuple[str, ...]
    make: Callable[[Cut, AugmentSources, AugmentConfig, np.random.Generator], Cut]


AUGMENTATIONS: Registry = Registry("augmentation", names=CHOICES[AugmentConfig]["choices"])


def _recipe(name: str, *needs: str):
    def add(make):
        AUGMENTATIONS.register(name)(Recipe(needs, make))
        return make

    return add


def overlay(reference: Cut, noise: Cut, snr: float, epsilon: float = 0.0) -> MixedCut:
    """``noise`` mixed into ``reference`` at ``snr`` dB relative to all of the reference's audio.

    Unlike ``Cut.mix``, a mixed ``noise`` (babble) is scaled as one signal, and a mixed
    ``reference`` (an already noisy window) counts whole, as in the reference code.

    :param epsilon: added to both mean powers, as the reference code does (1e-4): the noise is
        scaled by ``sqrt((P_reference + epsilon) / (P_noise + epsilon) / 10^(snr / 10))``.
        lhotse's mixer has no such term, so both cuts are decoded here to set the gain.
    """
    if epsilon > 0:
        ratio = (_power(reference) + epsilon) / (_power(noise) + epsilon)
        gain = float(np.sqrt(ratio / 10 ** (snr / 10)))
        track = MixTrack(cut=noise.perturb_volume(gain, affix_id=False))
    else:
        track = MixTrack(cut=noise, snr=snr)
    return MixedCut(id=reference.id, tracks=[MixTrack(cut=reference, is_snr_reference=True), track])


def _power(cut: Cut) -> float:
    return float(np.mean(np.square(load_audio(cut), dtype=np.float64)))


def crop(source: Cut, duration: float, rng: np.random.Generator) -> Cut:
    """A random ``duration``-second piece of ``source``, at a random sample; a shorter source
    is repeated until it is long enough."""
    if source.duration < duration:
        looped = source
        while looped.duration < duration:
            looped = looped.append(source, preserve_id="left")
        return looped.truncate(duration=duration, preserve_id=True)
    spare = source.num_samples - compute_num_samples(duration, source.sampling_rate)
    offset = rng.integers(spare + 1) / source.sampling_rate
    return source.truncate(offset=offset, duration=duration, preserve_id=True)


def babble(
    sources: AugmentSources, cfg: AugmentConfig, duration: float, rng: np.random.Generator
) -> Cut:
    """The average of ``cfg.babble_speakers`` (inclusive range) speech crops at their own levels
    (the reference's average; it matters only with ``snr_epsilon``, the mixer rescales the sum)."""
    low, high = cfg.babble_speakers
    count = int(rng.integers(low, high + 1))
    picks = rng.choice(len(sources.speech), count, replace=count > len(sources.speech))
    mixed = crop(sources.speech[picks[0]], duration, rng)
    for pick in picks[1:]:
        mixed = mixed.mix(crop(sources.speech[pick], duration, rng), preserve_id="left")
    return mixed.perturb_volume(1.0 / count, affix_id=False)


def _uniform(bounds: List[float], rng: np.random.Generator) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _pick(cuts: List[Cut], rng: np.random.Generator) -> Cut:
    return cuts[int(rng.integers(len(cuts)))]


@dataclass
class UnitEnergyReverb(AudioTransform):
    """The reference code's reverberation, as a lhotse transform: the samples convolved with
    the RIR (its first channel) scaled to unit energy, the full convolution cut to the input's
    length. Unlike lhotse's ``ReverbWithImpulseResponse``, the output is not advanced by the
    RIR's peak (it lags by the RIR's onset) and not rescaled to the input's power.

    :param rir: the impulse response's cut (its dict form when read back from a manifest).
    """

    rir: Cut  # given as its dict form, it is deserialised

    def __post_init__(self):
        if isinstance(self.rir, dict):
            self.rir = deserialize_item(dict(self.rir))  # it pops keys: a copy

    def to_dict(self) -> dict:
        return {"name": type(self).__name__, "kwargs": {"rir": self.rir.to_dict()}}

    def __call__(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        rir = torch.from_numpy(load_audio(self.rir).astype(np.float64))
        rir = rir / rir.square().sum().sqrt()
        out = [
            convolve1d(torch.from_numpy(channel.astype(np.float64)), rir)[: samples.shape[-1]]
            for channel in samples
        ]
        return torch.stack(out).numpy().astype(samples.dtype)

    def reverse_timestamps(self, offset, duration, sampling_rate):
        return offset, duration  # the output keeps the input's samples and length


# augment.rir_mode: window, RIR cut -> the reverberated window.
REVERBERATIONS: Registry = Registry("reverberation", names=CHOICES[AugmentConfig]["rir_mode"])
REVERBERATIONS.register("lhotse")(lambda window, rir: window.reverb_rir(rir, affix_id=False))


@REVERBERATIONS.register("original")
def reverb_unit_energy(window: Cut, rir: Cut) -> Cut:
    """``window`` reverberated by :class:`UnitEnergyReverb` with ``rir``."""
    recording = window.recording
    transforms = [*(recording.transforms or []), UnitEnergyReverb(rir=rir)]
    return fastcopy(window, recording=fastcopy(recording, transforms=transforms))


@_recipe("none")
def _unchanged(window, sources, cfg, rng):
    return window


@_recipe("rir", "rir")
def _reverberate(window, sources, cfg, rng):
    return REVERBERATIONS.get(cfg.rir_mode)(window, _pick(sources.rir, rng))


@_recipe("babble", "speech")
def _babble(window, sources, cfg, rng):
    noise = babble(sources, cfg, window.duration, rng)
    return overlay(window, noise, _uniform(cfg.babble_snr, rng), cfg.snr_epsilon)


@_recipe("music", "music")
def _music(window, sources, cfg, rng):
    noise = crop(_pick(sources.music, rng), window.duration, rng)
    return overlay(window, noise, _uniform(cfg.music_snr, rng), cfg.snr_epsilon)


@_recipe("noise", "noise")
def _noise(window, sources, cfg, rng):
    noise = crop(_pick(sources.noise, rng), window.duration, rng)
    return overlay(window, noise, _uniform(cfg.noise_snr, rng), cfg.snr_epsilon)


@_recipe("speech_music", "speech", "music")
def _speech_music(window, sources, cfg, rng):
    return _music(_babble(window, sources, cfg, rng), sources, cfg, rng)


def clip(audio: np.ndarray, ratio: float) -> np.ndarray:
    """Hard clipping at ``ratio`` times the window's minimum and maximum (the reference's rule).

    >>> clip(np.array([-1.0, 0.2, 0.5]), 0.5).tolist()
    [-0.5, 0.2, 0.25]
    """
    return np.clip(audio, audio.min() * ratio, audio.max() * ratio)


# augment.gain_curves: the reference's easing curves on t in [0, 1], each rising from 0 to 1
# except "bounce".
EASING_CURVES: Registry = Registry("easing curve", names=CHOICES[AugmentConfig]["gain_curves"])
EASING_CURVES.register("sine")(lambda t: 1.0 - np.cos(t * np.pi / 2))
EASING_CURVES.register("quad")(lambda t: t**2)
EASING_CURVES.register("cubic")(lambda t: t**3)
EASING_CURVES.register("circ")(lambda t: 1.0 - np.sqrt(1.0 - t**2))
EASING_CURVES.register("expo")(lambda t: np.where(t == 0, 0.0, 2.0 ** (10.0 * t - 10.0)))


@EASING_CURVES.register("bounce")
def _bounce(t: np.ndarray) -> np.ndarray:
    """The reference's "bounce": easeOutBounce's four pieces ``7.5625 (t - c)^2 + lift`` but
    with ``(t - c) t`` for the square, so it drops back at each piece's start and ends at
    2.016 (a gain of up to 1.8 at the envelope's high end)."""
    piece = np.searchsorted(np.array([1.0, 2.0, 2.5]) / 2.75, t, side="right")
    centre = np.array([0.0, 1.5, 2.25, 2.625])[piece] / 2.75
    lift = np.array([0.0, 0.75, 0.9375, 0.984375])[piece]
    return 7.5625 * (t - centre) * t + lift


def gain_envelope(audio: np.ndarray, floor: float, curve: str, falling: bool) -> np.ndarray:
    """Multiply by a gain that glides along an easing curve from ``floor`` to 1 (or from 1 to
    ``floor`` when ``falling``) over the window.

    >>> gain_envelope(np.ones(3), 0.2, "quad", falling=False).round(3).tolist()
    [0.2, 0.4, 1.0]
    """
    ramp = EASING_CURVES.get(curve)(np.linspace(0.0, 1.0, len(audio)))
    if falling:
        ramp = ramp[::-1]
    return (audio * (floor + (1.0 - floor) * ramp)).astype(audio.dtype)


class StudentAugmenter:
    """Turns a clean window into the student's input (see the module docstring).

    :raises InputError: at construction, for a config that names an unknown choice or weights
        a choice whose sources stage 1 did not write.
    """

    def __init__(self, cfg: AugmentConfig, sources: AugmentSources):
        _check_config(cfg, sources)
        self.cfg, self.sources = cfg, sources
        self.names = [name for name, weight in cfg.choices.items() if weight > 0]
        weights = np.array([cfg.choices[name] for name in self.names], dtype=np.float64)
        self.probs = weights / weights.sum() if len(weights) else weights

    def __call__(
        self, window: Cut, rng: np.random.Generator, clean: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """The student's samples for ``window``: float32, as many as the window has.

        :param clean: ``window``'s samples when the caller has decoded them already; returned
            (not copied) for a window left clean, which saves decoding it again.
        """
        cut, augmented = self.augment(window, rng)
        audio = clean if clean is not None and cut is window else load_audio(cut)
        if augmented:
            if rng.random() < self.cfg.clip_prob:
                audio = clip(audio, _uniform(self.cfg.clip_level, rng))
            if rng.random() < self.cfg.gain_prob:
                curves = self.cfg.gain_curves
                curve = curves[int(rng.integers(len(curves)))]
                floor = _uniform(self.cfg.gain_floor, rng)
                audio = gain_envelope(audio, floor, curve, falling=bool(rng.random() < 0.5))
        return audio

    def augment(self, window: Cut, rng: np.random.Generator) -> Tuple[Cut, bool]:
        """The mixed / reverberated cut, before clipping and envelope, and whether the window
        was picked for augmentation."""
        if not self.names or rng.random() >= self.cfg.prob:
            return window, False
        name = self.names[int(rng.choice(len(self.names), p=self.probs))]
        return AUGMENTATIONS.get(name).make(window, self.sources, self.cfg, rng), True


def _check_config(cfg: AugmentConfig, sources: AugmentSources) -> None:
    # Probabilities and ranges are checked at config load (oskdft.config.LIMITS).
    for name, weight in cfg.choices.items():
        if name not in AUGMENTATIONS:
            raise InputError(
                f"augment.choices.{name}",
                "unknown augmentation",
                hint=f"known: {', '.join(AUGMENTATIONS.names())}",
            )
        missing = [kind for kind in AUGMENTATIONS.get(name).needs if not getattr(sources, kind)]
        if weight > 0 and cfg.prob > 0 and missing:
            raise InputError(
                f"augment.choices.{name}",
                f"needs {' and '.join(missing)} sources, and stage 1 "
                f"wrote none (data/manifests/aug_{missing[0]}_cuts.jsonl.gz)",
                hint=f"add such a set to aug_sets in run.conf, or set augment.choices.{name}: 0",
            )
