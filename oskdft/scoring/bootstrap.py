"""Confidence intervals of EER and minDCF by a bootstrap over speakers, and paired differences.

Trials are not independent: every trial of a speaker shares that speaker's voice, so resampling
trials alone understates the spread. A resample here draws the trial list's speakers (those of
both sides, pooled) with replacement, as many as there are, and counts each trial
``n(enrolment speaker) x n(test speaker)`` times, ``n`` being how often a speaker was drawn: the
speaker level of the joint bootstrap of Ferrer and Riera ("Confidence intervals for evaluation in
machine learning", github.com/luferrer/ConfidenceIntervals; DCA-PLDA's
``compute_performance_with_confidence_intervals``), itself the subsets bootstrap of Bolle et al.
(2004) and Poh and Bengio (2007) extended to the two sides of a trial. A target trial thus counts
``n^2`` times; a trial with an undrawn speaker on either side drops out.

The interval is the percentile interval of the resampled metric (2.5th and 97.5th percentiles for
95%). Two systems scored on the same trials are compared on the same resamples (a paired
bootstrap): the interval of the difference of their metrics; when it excludes 0 the difference is
called significant. Resamples with no target or no non-target trial left have no EER and are
left out of the percentiles.

The scores are sorted once per system and back end; the resamples' weights are applied in chunks
(:data:`CHUNK_ELEMENTS` weights at a time), so memory stays bounded on VoxCeleb1-E's 580,000
trials. Resamples are seeded: the same seed, speakers and resample count give the same intervals.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from oskdft.scoring.metrics import (
    DCF_TARGET_PRIORS,
    SortedTrials,
    eer_from_rates,
    min_dcf_from_rates,
    rates_from_counts,
    sort_trials,
    weighted_counts,
)

METHOD = "bootstrap over speakers (joint: both sides of a trial)"
LEVEL = 0.95
# Weights per chunk of resamples. Small enough that each chunk's arrays (16-32 MB) stay below
# glibc's mmap threshold and are reused, not page-faulted anew: 2-3x faster than 20M.
CHUNK_ELEMENTS = 4_000_000
# The metrics that get intervals, as evaluate() names them.
METRICS = ("eer", *(f"min_dcf_{p}" for p in DCF_TARGET_PRIORS))


class SpeakerBootstrap:
    """The resamples of one trial list, shared by every system and back end scored on it.

    :param enrol_speakers: the speaker of each trial's enrolment side (any hashable labels).
    :param test_speakers: the speaker of each trial's test side.
    :param resamples: how many resamples.
    :param seed: seeds the draws.
    """

    def __init__(
        self, enrol_speakers: Sequence, test_speakers: Sequence, resamples: int, seed: int = 0
    ):
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {resamples}")
        speakers, index = np.unique(
            np.r_[np.asarray(enrol_speakers), np.asarray(test_speakers)], return_inverse=True
        )
        self.enrol, self.test = np.split(index.ravel(), 2)
        self.num_speakers = len(speakers)
        rng = np.random.default_rng(seed)
        # counts[b, s]: how often resample b drew speaker s.
        uniform = np.full(self.num_speakers, 1.0 / self.num_speakers)
        counts = rng.multinomial(self.num_speakers, uniform, size=resamples)
        # int32 weights and sums (twice as fast as int64) while no total can overflow them.
        fits = int(counts.max()) ** 2 * len(self.enrol) < np.iinfo(np.int32).max
        self.counts = counts.astype(np.int32 if fits else np.int64)

    @property
    def resamples(self) -> int:
        return len(self.counts)

    def metrics(self, scores: np.ndarray, labels: np.ndarray) -> Dict[str, np.ndarray]:
        """Each metric of :data:`METRICS` on every resample: name -> ``[resamples]`` array."""
        if len(scores) != len(self.enrol):
            raise ValueError(f"{len(scores)} scores for {len(self.enrol)} trials")
        trials = sort_trials(scores, labels)
        enrol, test = self.enrol[trials.order], self.test[trials.order]
        out = {name: np.empty(self.resamples) for name in METRICS}
        step = max(1, CHUNK_ELEMENTS // len(scores))
        for start in range(0, self.resamples, step):
            rows = slice(start, start + step)
            counts = self.counts[rows]
            weights = counts[:, enrol] * counts[:, test]  # [b, N], in score order
            for name, values in _chunk_metrics(trials, *weighted_counts(trials, weights)).items():
                out[name][rows] = values
        return out


def _chunk_metrics(
    trials: SortedTrials, targets_below: np.ndarray, all_below: np.ndarray
) -> Dict[str, np.ndarray]:
    """The metrics of a chunk of resamples from their ``[b, K]`` counts (:func:`weighted_counts`).

    Full ``[b, K]`` rates would cost most of the time: the EER needs the rates at the two points
    around the crossing, found by bisection, and a minDCF only the points where ``P_fa`` is low
    enough for the cost to beat rejecting everything (normalised DCF 1).
    """
    num_rows, size = targets_below.shape
    totals = np.stack([targets_below[:, -1], all_below[:, -1]], axis=-1)
    row = np.arange(num_rows)[:, None]

    def rates_at(columns: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:  # columns: [b, m]
        return rates_from_counts(targets_below[row, columns], all_below[row, columns], totals)

    def gap_at_most_zero(column: np.ndarray) -> np.ndarray:
        p_miss, p_fa = rates_at(column[:, None])
        return (p_miss <= p_fa)[:, 0]

    def fa_above(bound: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda column: rates_at(column[:, None])[1][:, 0] > bound

    a = np.maximum(_last_true(gap_at_most_zero, num_rows, size), 0)
    around = np.stack([a, np.minimum(a + 1, size - 1)], axis=-1)
    result = {"eer": eer_from_rates(trials.thresholds[around], *rates_at(around))[0]}
    valid = np.isfinite(result["eer"])
    for p_target in DCF_TARGET_PRIORS:
        bound = min(p_target, 1 - p_target) / (1 - p_target)  # P_fa above it costs more than 1
        first = _last_true(fa_above(bound), num_rows, size) + 1
        begin = int(first[valid].min()) if valid.any() else 0
        rates = rates_from_counts(targets_below[:, begin:], all_below[:, begin:], totals)
        result[f"min_dcf_{p_target}"] = min_dcf_from_rates(
            trials.thresholds[begin:], *rates, p_target
        )[0]
    return result


def _last_true(
    predicate: Callable[[np.ndarray], np.ndarray], num_rows: int, size: int
) -> np.ndarray:
    """Per row, the last column in ``[0, size)`` where ``predicate`` holds (-1: none), for a
    predicate that holds up to some column and not after it: a bisection of all rows at once.

    >>> values = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    >>> _last_true(lambda c: values[[0, 1], c] <= 2, 2, 4).tolist()
    [1, -1]
    """
    low = np.full(num_rows, -1)  # the predicate holds here (or nowhere, -1)...
    high = np.full(num_rows, size)  # ...and fails here (or nowhere, size)
    while True:
        open_rows = high - low > 1
        if not open_rows.any():
            return low
        middle = (low + high) // 2
        holds = predicate(np.clip(middle, 0, size - 1))
        low = np.where(open_rows & holds, middle, low)
        high = np.where(open_rows & ~holds, middle, high)


def interval(values: np.ndarray, level: float = LEVEL) -> Tuple[float, float]:
    """Percentile interval of resampled values, NaN resamples left out.

    >>> interval(np.arange(101.0))
    (2.5, 97.5)
    """
    tail = (100 - 100 * level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def excludes_zero(low: float, high: float) -> bool:
    """Whether a difference's interval says the two systems differ."""
    return low > 0 or high < 0
