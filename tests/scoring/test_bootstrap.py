"""The speaker bootstrap against resamples built by hand: each trial list copied trial by trial as
many times as its two speakers were drawn, scored with the brute-force metrics of
test_metrics.py."""

import numpy as np
import pytest

from oskdft.scoring import bootstrap
from oskdft.scoring.bootstrap import SpeakerBootstrap, excludes_zero, interval
from tests.scoring.test_metrics import brute_force_eer, brute_force_min_dcf


def speaker_trials(seed, speakers=6, n=240, ties=False, spread=1.0):
    """Trials between ``speakers`` speakers; each speaker's target scores are shifted by its own
    offset (``spread``), so trials of one speaker are correlated."""
    rng = np.random.default_rng(seed)
    names = np.array([f"spk{s}" for s in range(speakers)])
    enrol = rng.integers(0, speakers, n)
    labels = rng.random(n) < 0.4
    test = np.where(labels, enrol, (enrol + rng.integers(1, speakers, n)) % speakers)
    offset = spread * rng.normal(size=speakers)
    scores = rng.normal(size=n) + labels * (1.5 + offset[enrol])
    if ties:
        scores = np.round(scores * 2) / 2
    return names[enrol], names[test], scores, labels


def by_hand(enrol, test, scores, labels, drawn):
    """The resampled trial list: each trial repeated n(enrol speaker) x n(test speaker) times."""
    times = np.array([drawn.get(e, 0) * drawn.get(t, 0) for e, t in zip(enrol, test, strict=True)])
    return np.repeat(scores, times), np.repeat(labels, times)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True)])
def test_each_resample_equals_the_metrics_of_its_trials_copied_by_hand(seed, ties, monkeypatch):
    monkeypatch.setattr(bootstrap, "CHUNK_ELEMENTS", 700)  # several chunks of 2 resamples
    enrol, test, scores, labels = speaker_trials(seed, ties=ties)
    boot = SpeakerBootstrap(enrol, test, resamples=7, seed=seed)
    got = boot.metrics(scores, labels)
    speakers = sorted(set(enrol) | set(test))
    assert boot.counts.shape == (7, len(speakers))
    for b in range(7):
        assert boot.counts[b].sum() == len(speakers), "as many draws as speakers"
        drawn = dict(zip(speakers, boot.counts[b].tolist(), strict=True))
        s, lab = by_hand(enrol, test, scores, labels, drawn)
        if lab.all() or not lab.any():
            assert np.isnan(got["eer"][b])
            continue
        assert got["eer"][b] == pytest.approx(brute_force_eer(s, lab))
        for p_target in (0.01, 0.001):
            assert got[f"min_dcf_{p_target}"][b] == pytest.approx(
                brute_force_min_dcf(s, lab, p_target)
            )


def test_a_speaker_drawn_twice_doubles_its_side_and_seeds_repeat():
    enrol, test, scores, labels = speaker_trials(2)
    a = SpeakerBootstrap(enrol, test, resamples=50, seed=3)
    b = SpeakerBootstrap(enrol, test, resamples=50, seed=3)
    c = SpeakerBootstrap(enrol, test, resamples=50, seed=4)
    assert np.array_equal(a.counts, b.counts) and not np.array_equal(a.counts, c.counts)
    for name, values in a.metrics(scores, labels).items():
        assert np.array_equal(values, b.metrics(scores, labels)[name])


def test_speaker_intervals_are_wider_than_trial_intervals_when_speakers_differ():
    """Speaker effects make a speaker's trials move together: resampling trials (each trial its
    own 'speaker' on both sides) must give a narrower interval than resampling speakers."""
    enrol, test, scores, labels = speaker_trials(5, speakers=20, n=4000, spread=1.5)
    speakers = SpeakerBootstrap(enrol, test, resamples=300).metrics(scores, labels)["eer"]
    ids = np.arange(len(scores))
    trials = SpeakerBootstrap(ids, ids + len(ids), resamples=300).metrics(scores, labels)["eer"]
    low, high = interval(speakers)
    trial_low, trial_high = interval(trials)
    assert high - low > 1.5 * (trial_high - trial_low)


def test_paired_difference_separates_a_better_system_and_not_a_copy():
    enrol, test, scores, labels = speaker_trials(6, speakers=12, n=3000)
    boot = SpeakerBootstrap(enrol, test, resamples=200)
    base = boot.metrics(scores, labels)["eer"]
    better = boot.metrics(scores + 1.0 * labels, labels)["eer"]
    noisy = boot.metrics(scores + 0.01 * np.random.default_rng(0).normal(size=len(scores)), labels)[
        "eer"
    ]
    assert excludes_zero(*interval(better - base))
    assert not excludes_zero(*interval(noisy - base))


def test_interval_leaves_out_failed_resamples_and_reads_the_level():
    values = np.r_[np.arange(101.0), np.nan]
    assert interval(values) == (2.5, 97.5)
    assert interval(values, level=0.5) == (25.0, 75.0)
    assert excludes_zero(0.1, 0.3) and excludes_zero(-0.3, -0.1)
    assert not excludes_zero(-0.1, 0.3) and not excludes_zero(0.0, 0.3)
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        SpeakerBootstrap(["a"], ["b"], resamples=0)
