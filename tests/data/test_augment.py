"""Online augmentation of the student's input."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording
from lhotse.serialization import deserialize_item

from oskdft.config import AugmentConfig, SystemConfig, apply_overrides, load_config
from oskdft.data.audio import load_audio, mono_cut
from oskdft.data.augment import (
    AUGMENTATIONS,
    AugmentSources,
    StudentAugmenter,
    clip,
    crop,
    gain_envelope,
    reverb_unit_energy,
)
from oskdft.data.windows import make_windows_from_config
from oskdft.layout import windows_path
from oskdft.utils.errors import InputError
from tests.data.toy_corpus import AUG_SETS, RATE, make_toy_corpus, toy_data_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = make_toy_corpus(tmp_path_factory.mktemp("toy"))
    make_windows_from_config(data, toy_data_config(), "train", AUG_SETS)
    return data


@pytest.fixture(scope="module")
def windows(data):
    return list(CutSet.from_file(windows_path(data)))


@pytest.fixture(scope="module")
def sources(data):
    return AugmentSources.from_data_dir(data)


def only(choice, **changes):
    """Always augment, with one choice; no clipping or envelope unless changed."""
    settings = dict(prob=1.0, choices={choice: 1.0}, clip_prob=0.0, gain_prob=0.0)
    return AugmentConfig(**{**settings, **changes})


def snr_db(signal, noisy):
    return 10 * np.log10(np.mean(signal**2) / np.mean((noisy - signal) ** 2))


@pytest.mark.parametrize(
    "choice,field", [("noise", "noise_snr"), ("music", "music_snr"), ("babble", "babble_snr")]
)
def test_mixing_reaches_the_configured_snr(windows, sources, choice, field):
    window = windows[3]
    clean = load_audio(window)
    for snr in (0.0, 7.5, 20.0):
        augmenter = StudentAugmenter(only(choice, **{field: [snr, snr]}), sources)
        student = augmenter(window, np.random.default_rng(int(snr)))
        assert student.shape == clean.shape
        assert snr_db(clean, student) == pytest.approx(snr, abs=0.01)


def test_drawn_snrs_stay_in_the_configured_ranges(windows, sources):
    cfg = AugmentConfig(prob=1.0, choices={"noise": 1.0}, clip_prob=0.0, gain_prob=0.0)
    augmenter = StudentAugmenter(cfg, sources)
    realised = [
        snr_db(load_audio(w), augmenter(w, np.random.default_rng(i)))
        for i, w in enumerate(windows[:12])
    ]
    low, high = cfg.noise_snr
    assert all(low - 0.01 <= snr <= high + 0.01 for snr in realised)
    assert np.ptp(realised) > 3.0  # drawn, not fixed


def test_speech_music_scales_music_against_the_babbled_window(windows, sources):
    cfg = only("speech_music", babble_snr=[15.0, 15.0], music_snr=[5.0, 5.0])
    cut, augmented = StudentAugmenter(cfg, sources).augment(windows[0], np.random.default_rng(0))
    assert augmented
    babbled = load_audio(cut.tracks[0].cut)
    assert snr_db(load_audio(windows[0]), babbled) == pytest.approx(15.0, abs=0.01)
    assert snr_db(babbled, load_audio(cut)) == pytest.approx(5.0, abs=0.01)


def test_babble_mixes_the_configured_number_of_speech_files(windows, sources):
    cfg = only("babble", babble_speakers=[3, 3])
    cut, _ = StudentAugmenter(cfg, sources).augment(windows[0], np.random.default_rng(1))
    assert len(cut.tracks[1].cut.tracks) == 3


def test_a_short_noise_is_repeated_to_the_window_length(sources):
    short = min(sources.noise, key=lambda c: c.duration)
    assert short.duration < 1.0
    audio = load_audio(crop(short, 2.0, np.random.default_rng(0)))
    n = short.num_samples
    assert len(audio) == 2 * RATE
    np.testing.assert_allclose(audio[n : 2 * n], audio[:n])


def test_reverberation_changes_the_window_but_keeps_its_length_and_power(windows, sources):
    clean = load_audio(windows[0])
    reverberant = StudentAugmenter(only("rir"), sources)(windows[0], np.random.default_rng(0))
    assert reverberant.shape == clean.shape
    assert not np.allclose(reverberant, clean, atol=1e-3)
    assert np.mean(reverberant**2) == pytest.approx(np.mean(clean**2), rel=0.2)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_choice_gives_a_window_of_the_same_length(windows, sources, name):
    clean = load_audio(windows[1])
    student = StudentAugmenter(only(name), sources)(windows[1], np.random.default_rng(2))
    assert student.dtype == np.float32 and student.shape == clean.shape
    assert np.array_equal(student, clean) == (name == "none")


def test_the_same_generator_seed_gives_the_same_input(windows, sources):
    augmenter = StudentAugmenter(AugmentConfig(prob=1.0), sources)
    first = augmenter(windows[2], np.random.default_rng([1, 2, 3]))
    np.testing.assert_array_equal(augmenter(windows[2], np.random.default_rng([1, 2, 3])), first)
    others = [augmenter(windows[2], np.random.default_rng([1, 2, k])) for k in range(4, 8)]
    assert any(not np.array_equal(first, other) for other in others)


def test_passing_the_decoded_clean_window_changes_nothing(windows, sources):
    augmenter = StudentAugmenter(AugmentConfig(), sources)  # some windows clean, some not
    clean = load_audio(windows[2])
    for k in range(12):
        np.testing.assert_array_equal(
            augmenter(windows[2], np.random.default_rng([1, 2, k]), clean=clean),
            augmenter(windows[2], np.random.default_rng([1, 2, k])),
        )


def test_probability_zero_leaves_the_window_clean(windows, sources):
    cfg = AugmentConfig(prob=0.0, clip_prob=1.0, gain_prob=1.0)
    student = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(0))
    np.testing.assert_array_equal(student, load_audio(windows[0]))


def test_choices_are_drawn_with_the_configured_frequencies(windows, sources):
    augmenter = StudentAugmenter(AugmentConfig(), sources)  # the paper's: p=0.6, six choices
    rng = np.random.default_rng(0)
    drawn = [augmenter.augment(windows[0], rng) for _ in range(3000)]
    assert np.mean([augmented for _, augmented in drawn]) == pytest.approx(0.6, abs=0.03)
    unchanged = sum(cut is windows[0] for cut, augmented in drawn if augmented)
    assert unchanged / 3000 == pytest.approx(0.6 / 6, abs=0.02)  # the "none" choice


def test_clipping_and_envelope_follow_their_probabilities(windows, sources):
    clean = load_audio(windows[0])
    cfg = only("none", clip_prob=1.0, clip_level=[0.5, 0.5])
    clipped = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(0))
    assert clipped.max() == pytest.approx(0.5 * clean.max())
    assert clipped.min() == pytest.approx(0.5 * clean.min())
    cfg = only("none", gain_prob=1.0, gain_floor=[0.2, 0.2])
    ratio = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(0)) / clean
    assert ratio.min() == pytest.approx(0.2, abs=1e-3) and ratio.max() == pytest.approx(1.0)


def test_clip_and_gain_envelope():
    x = np.array([-0.8, -0.1, 0.3, 1.0])
    assert clip(x, 0.5).tolist() == [-0.4, -0.1, 0.3, 0.5]
    ramp = gain_envelope(np.ones(101), 0.1, "sine", falling=True)
    assert ramp[0] == pytest.approx(1.0) and ramp[-1] == pytest.approx(0.1)
    assert np.all(np.diff(ramp) <= 1e-12)


def test_bad_configs_are_input_errors(sources):
    with pytest.raises(InputError, match="augment.choices.echo: unknown augmentation"):
        StudentAugmenter(AugmentConfig(choices={"echo": 1.0}), sources)
    no_rirs = dataclasses.replace(sources, rir=[])
    with pytest.raises(InputError, match="needs rir sources"):
        StudentAugmenter(AugmentConfig(), no_rirs)
    StudentAugmenter(AugmentConfig(choices={"rir": 0.0, "noise": 1.0}), no_rirs)  # unweighted


# The original code's variants (GitHub Jungwoo4021/OS-KDFT, scripts/data_processing/augmentation),
# each checked against its formula written out here.


def source_cut(path, samples):
    """A 16 kHz source (noise, speech or RIR) holding exactly ``samples``."""
    sf.write(str(path), np.asarray(samples, dtype=np.float32), RATE, subtype="FLOAT")
    return mono_cut(Recording.from_file(path))


def reverberate(window, rir, mode):
    cfg = only("rir", rir_mode=mode)
    return StudentAugmenter(cfg, AugmentSources(rir=[rir]))(window, np.random.default_rng(0))


def test_original_reverberation_delays_by_the_rir_onset_without_compensation(windows, tmp_path):
    x = load_audio(windows[0])
    impulse = np.zeros(40)
    impulse[5] = 0.5  # unit energy once normalised: the output is the input, 5 samples late
    rir = source_cut(tmp_path / "impulse.wav", impulse)
    expected = np.concatenate([np.zeros(5), x[:-5]])
    np.testing.assert_allclose(reverberate(windows[0], rir, "original"), expected, atol=1e-6)
    # lhotse's (Kaldi's) advances the output by the RIR's peak and keeps the input's power.
    np.testing.assert_allclose(reverberate(windows[0], rir, "lhotse"), x, atol=1e-5)


def test_original_reverberation_convolves_with_the_unit_energy_rir(windows, tmp_path):
    x = load_audio(windows[0]).astype(np.float64)
    rir = source_cut(tmp_path / "two_taps.wav", [0.3, -0.4])  # energy 0.25: taps 0.6, -0.8
    expected = 0.6 * x - 0.8 * np.concatenate([[0.0], x[:-1]])
    np.testing.assert_allclose(reverberate(windows[0], rir, "original"), expected, atol=1e-6)


def test_the_original_reverberation_survives_serialisation(windows, sources):
    reverberated = reverb_unit_energy(windows[0], sources.rir[0])
    read_back = deserialize_item(reverberated.to_dict())
    np.testing.assert_array_equal(load_audio(read_back), load_audio(reverberated))
    assert not np.allclose(load_audio(reverberated), load_audio(windows[0]), atol=1e-3)


def original_easing(name, x):
    """The reference's easing functions, one point at a time."""
    if name == "sine":
        return 1 - math.cos(x * math.pi * 0.5)
    if name == "quad":
        return x * x
    if name == "cubic":
        return x * x * x
    if name == "circ":
        return 1 - math.sqrt(1 - x**2)
    if name == "expo":
        return 0 if x == 0 else 2 ** (10 * x - 10)
    n1, d1 = 7.5625, 2.75  # "bounce", with the reference's (x - c) * x
    if x < 1 / d1:
        return n1 * x * x
    if x < 2 / d1:
        return n1 * (x - 1.5 / d1) * x + 0.75
    if x < 2.5 / d1:
        return n1 * (x - 2.25 / d1) * x + 0.9375
    return n1 * (x - 2.625 / d1) * x + 0.984375


@pytest.mark.parametrize("name", ["sine", "quad", "cubic", "circ", "expo", "bounce"])
def test_the_six_easing_curves_follow_the_original_formulas(name):
    n, floor = 1101, 0.2  # 1100 steps: the grid holds bounce's breakpoints 4/11, 8/11, 10/11
    t = np.linspace(0, 1, n)
    curve = np.array([original_easing(name, v) for v in t])
    expected = floor + (1 - floor) * curve
    rising = gain_envelope(np.ones(n), floor, name, falling=False)
    np.testing.assert_allclose(rising, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        gain_envelope(np.ones(n), floor, name, falling=True), expected[::-1], rtol=1e-12, atol=1e-12
    )


def test_only_the_configured_curves_are_drawn(windows, sources):
    clean = load_audio(windows[0])
    bounce = 0.2 + 0.8 * np.array(
        [original_easing("bounce", v) for v in np.linspace(0, 1, len(clean))]
    )
    cfg = only("none", gain_prob=1.0, gain_floor=[0.2, 0.2], gain_curves=["bounce"])
    for seed in range(4):
        gain = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(seed)) / clean
        assert np.allclose(gain, bounce, atol=1e-4) or np.allclose(gain, bounce[::-1], atol=1e-4)


def original_mix(x, noise, snr, eps=1e-4):
    """The reference's noise injection: its dB levels carry eps inside the logarithms."""
    x_db = 10 * np.log10(np.mean(x**2) + eps)
    noise_db = 10 * np.log10(np.mean(noise**2) + eps)
    return x + np.sqrt(10 ** ((x_db - noise_db - snr) / 10)) * noise


def test_snr_epsilon_scales_the_noise_as_the_original(windows, tmp_path):
    x = load_audio(windows[0]).astype(np.float64)
    quiet = 0.003 * np.random.default_rng(5).standard_normal(len(x))  # -50 dBFS: eps dominates
    sources = AugmentSources(noise=[source_cut(tmp_path / "quiet.wav", quiet)])
    cfg = only("noise", noise_snr=[5.0, 5.0], snr_epsilon=1e-4)
    student = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(0))
    noise = quiet.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(student, original_mix(x, noise, 5.0), atol=1e-6)
    assert snr_db(x, student) > 5.0 + 5.0  # much less noise than drawn
    exact = StudentAugmenter(dataclasses.replace(cfg, snr_epsilon=0.0), sources)
    assert snr_db(x, exact(windows[0], np.random.default_rng(0))) == pytest.approx(5.0, abs=0.01)


def test_babble_is_the_average_of_its_speech_crops(windows, tmp_path):
    x = load_audio(windows[0]).astype(np.float64)
    rng = np.random.default_rng(6)
    speech = [level * rng.standard_normal(len(x)) for level in (0.01, 0.02, 0.04)]
    sources = AugmentSources(
        speech=[source_cut(tmp_path / f"s{i}.wav", s) for i, s in enumerate(speech)]
    )
    cfg = only("babble", babble_speakers=[3, 3], babble_snr=[15.0, 15.0], snr_epsilon=1e-4)
    student = StudentAugmenter(cfg, sources)(windows[0], np.random.default_rng(0))
    mean = np.mean([s.astype(np.float32) for s in speech], axis=0, dtype=np.float64)
    np.testing.assert_allclose(student, original_mix(x, mean, 15.0), atol=1e-6)


def test_the_paper_config_augments_as_the_original_code():
    conf = Path(__file__).parents[2] / "egs" / "voxceleb" / "conf"
    paper = load_config(conf / "oskdft_paper.yaml").augment
    assert (paper.rir_mode, paper.snr_epsilon) == ("original", 1e-4)
    assert sorted(paper.gain_curves) == sorted(["sine", "quad", "cubic", "circ", "expo", "bounce"])
    assert (paper.prob, paper.clip_prob, paper.clip_level, paper.gain_prob, paper.gain_floor) == (
        0.6,
        0.3,
        [0.5, 0.9],
        0.3,
        [0.1, 0.3],
    )
    assert (paper.babble_speakers, paper.babble_snr, paper.music_snr, paper.noise_snr) == (
        [3, 8],
        [13.0, 20.0],
        [5.0, 25.0],
        [0.0, 15.0],
    )
    assert paper.choices == dict.fromkeys(AUGMENTATIONS.names(), 1.0)  # the six, uniformly
    improved = load_config(conf / "oskdft.yaml").augment
    assert (improved.rir_mode, improved.snr_epsilon) == ("lhotse", 0.0)
    assert "bounce" not in improved.gain_curves


@pytest.mark.parametrize(
    "override, problem",
    [
        ("augment.snr_epsilon=-1.0e-4", "augment.snr_epsilon must be at least 0"),
        ("augment.gain_curves=[]", "augment.gain_curves must name at least one curve"),
        (
            "augment.gain_curves=[sine, bouncy]",
            "augment.gain_curves must be one of sine, quad, cubic, circ, expo, bounce, "
            "got 'bouncy'",
        ),
        ("augment.rir_mode=kaldi", "augment.rir_mode must be one of lhotse, original, got 'kaldi'"),
    ],
)
def test_bad_original_options_are_refused_at_load(override, problem):
    with pytest.raises(InputError, match=f"^--override: {problem}"):
        apply_overrides(SystemConfig(), [override])
