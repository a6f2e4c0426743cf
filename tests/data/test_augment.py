"""Online augmentation of the student's input."""
import dataclasses

import numpy as np
import pytest
from lhotse import CutSet

from oskdft.config import AugmentConfig
from oskdft.data.audio import load_audio
from oskdft.data.augment import (
    AUGMENTATIONS,
    AugmentSources,
    StudentAugmenter,
    clip,
    crop,
    gain_envelope,
)
from oskdft.data.windows import make_windows_from_config, windows_path
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


@pytest.mark.parametrize("choice,field", [("noise", "noise_snr"), ("music", "music_snr"),
                                          ("babble", "babble_snr")])
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
    realised = [snr_db(load_audio(w), augmenter(w, np.random.default_rng(i)))
                for i, w in enumerate(windows[:12])]
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


def test_babble_sums_the_configured_number_of_speech_files(windows, sources):
    cfg = only("babble", babble_speakers=[3, 3])
    cut, _ = StudentAugmenter(cfg, sources).augment(windows[0], np.random.default_rng(1))
    assert len(cut.tracks[1].cut.tracks) == 3


def test_a_short_noise_is_repeated_to_the_window_length(sources):
    short = min(sources.noise, key=lambda c: c.duration)
    assert short.duration < 1.0
    audio = load_audio(crop(short, 2.0, np.random.default_rng(0)))
    n = short.num_samples
    assert len(audio) == 2 * RATE
    np.testing.assert_allclose(audio[n:2 * n], audio[:n])


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
