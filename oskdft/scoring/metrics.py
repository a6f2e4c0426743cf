"""Verification metrics: EER, minimum detection cost, Cllr and min Cllr, DET points.

A trial is accepted when its score is at or above the threshold ``t``, so
``P_miss(t)`` is the fraction of target scores below ``t`` and ``P_fa(t)`` the fraction of
non-target scores at or above it. The EER and every minDCF come from one sort of the scores
(:func:`error_rates`), at every distinct score plus one threshold above the largest (which
rejects everything).

>>> scores = np.array([0.1, 0.2, 0.3, 0.4])
>>> labels = np.array([False, True, False, True])
>>> compute_eer(scores, labels)
(0.5, 0.3)
>>> compute_min_dcf(scores, labels, p_target=0.01)
(0.5, 0.4)
"""

from __future__ import annotations

import math
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np
from scipy.optimize import isotonic_regression

# The operating points the results table reports (NIST SRE / VoxSRC: C_miss = C_fa = 1).
DCF_TARGET_PRIORS = (0.01, 0.001)


class SortedTrials(NamedTuple):
    """Trials sorted by score once, for any number of weightings (:func:`weighted_rates`)."""

    order: np.ndarray  # trial indices in ascending score order
    labels: np.ndarray  # labels in that order
    cuts: np.ndarray  # for each threshold, how many sorted trials lie below it
    thresholds: np.ndarray  # every distinct score, then one just above the largest


def sort_trials(scores: np.ndarray, labels: np.ndarray) -> SortedTrials:
    """Sort the trials by score and find the thresholds (checks the inputs)."""
    scores, labels = _check(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # First position of each distinct score: everything before it is rejected at that threshold.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    thresholds = np.r_[sorted_scores[starts], np.nextafter(sorted_scores[-1], np.inf)]
    return SortedTrials(order, labels[order], np.r_[starts, len(scores)], thresholds)


def weighted_rates(
    trials: SortedTrials, weights: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """``(p_miss, p_fa)`` at each of ``trials.thresholds``, each trial counted ``weights`` times.

    :param weights: per trial in sorted order, ``[N]`` or ``[B, N]`` (B weightings at once, e.g.
        bootstrap resamples: the rates are then ``[B, K]``); None counts every trial once. A
        weighting without targets or without non-targets gives NaN rates.
    """
    return rates_from_counts(*weighted_counts(trials, weights))


def weighted_counts(
    trials: SortedTrials, weights: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """``(targets_below, all_below)``: the weight of the target trials, and of all trials, below
    each threshold (shapes as in :func:`weighted_rates`), in the weights' dtype (int32 halves the
    bootstrap's memory traffic)."""
    if weights is None:
        weights = np.ones(len(trials.labels), dtype=np.int64)
    return (
        _counts_below(weights * trials.labels, trials.cuts),
        _counts_below(weights, trials.cuts),
    )


def rates_from_counts(
    targets_below: np.ndarray, all_below: np.ndarray, totals: Optional[np.ndarray] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """``(p_miss, p_fa)`` from :func:`weighted_counts`, or from some of its columns with
    ``totals`` (``[..., 2]``: the weight of the targets and of all trials) given."""
    if totals is None:
        totals = np.stack([targets_below[..., -1], all_below[..., -1]], axis=-1)
    num_targets, num_all = totals[..., :1], totals[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        p_miss = targets_below / num_targets
        p_fa = 1.0 - (all_below - targets_below) / (num_all - num_targets)
    return p_miss, p_fa


def _counts_below(weights: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Total weight of the trials below each threshold (a leading 0: none lies below the first)."""
    below = np.zeros(weights.shape[:-1] + (weights.shape[-1] + 1,), dtype=weights.dtype)
    np.cumsum(weights, axis=-1, out=below[..., 1:])
    # Without tied scores every position is a threshold, and the indexing would only copy.
    return below if len(cuts) == len(below) else below[..., cuts]


def error_rates(
    scores: np.ndarray, labels: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, p_miss, p_fa)`` at every distinct score and just above the largest.

    ``p_miss`` rises from 0 to 1 and ``p_fa`` falls from 1 to 0 as the threshold grows.
    """
    trials = sort_trials(scores, labels)
    return (trials.thresholds, *weighted_rates(trials))


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """Equal error rate (a fraction in [0, 1]) and the threshold where it is reached.

    The DET operating points are joined by straight lines; the EER is where that path crosses
    ``P_miss = P_fa``, and the threshold is interpolated the same way.

    :param scores: one score per trial, higher means more likely the same speaker.
    :param labels: True (or 1) for target trials.
    """
    eer, threshold = eer_from_rates(*error_rates(scores, labels))
    return float(eer), float(threshold)


def eer_from_rates(thresholds: np.ndarray, p_miss: np.ndarray, p_fa: np.ndarray) -> Tuple[Any, Any]:
    """EER and its threshold along the last axis of ``p_miss``/``p_fa`` (arrays for ``[B, K]``
    rates, NaN where the rates are; ``thresholds`` broadcast against them)."""
    gap = p_miss - p_fa  # rises from -1 to +1 (never falls)
    a = np.maximum(np.sum(gap <= 0, axis=-1, keepdims=True) - 1, 0)  # last point with gap <= 0
    b = np.minimum(a + 1, gap.shape[-1] - 1)
    gap_a, gap_b = np.take_along_axis(gap, a, -1), np.take_along_axis(gap, b, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(b == a, 0.0, gap_a / (gap_a - gap_b))
    miss_a, miss_b = np.take_along_axis(p_miss, a, -1), np.take_along_axis(p_miss, b, -1)
    eer = miss_a + w * (miss_b - miss_a)
    thresholds = np.broadcast_to(thresholds, gap.shape)
    low, high = np.take_along_axis(thresholds, a, -1), np.take_along_axis(thresholds, b, -1)
    threshold = low + w * (high - low)
    return eer[..., 0], threshold[..., 0]


def compute_min_dcf(
    scores: np.ndarray,
    labels: np.ndarray,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> Tuple[float, float]:
    """Minimum normalised detection cost over all thresholds, and its threshold.

    ``DCF(t) = c_miss p_target P_miss(t) + c_fa (1 - p_target) P_fa(t)``, divided by the cost of
    the better trivial system, ``min(c_miss p_target, c_fa (1 - p_target))``.
    """
    dcf, threshold = min_dcf_from_rates(*error_rates(scores, labels), p_target, c_miss, c_fa)
    return float(dcf), float(threshold)


def min_dcf_from_rates(
    thresholds: np.ndarray,
    p_miss: np.ndarray,
    p_fa: np.ndarray,
    p_target: float,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> Tuple[Any, Any]:
    """Along the last axis, as :func:`eer_from_rates`."""
    dcf = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    best = np.argmin(dcf, axis=-1)  # NaN rows give NaN below
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    return np.min(dcf, axis=-1) / norm, thresholds[best]


def compute_cllr(llrs: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost (bits) of scores read as natural-log likelihood ratios.

    0 is perfect, 1 is what a system that always says LLR = 0 costs.

    >>> compute_cllr(np.zeros(4), np.array([True, True, False, False]))
    1.0
    """
    llrs, labels = _check(llrs, labels, allow_infinite=True)
    target_cost = np.mean(np.logaddexp(0.0, -llrs[labels]))
    nontarget_cost = np.mean(np.logaddexp(0.0, llrs[~labels]))
    return float((target_cost + nontarget_cost) / (2 * math.log(2)))


def compute_min_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr after the best monotonic calibration of ``scores`` (pool-adjacent-violators).

    PAV fits the target posterior as a non-decreasing function of the score; tied scores are
    pooled first, so their order does not matter. Dividing out the empirical prior odds turns the
    posterior into a likelihood ratio.
    """
    scores, labels = _check(scores, labels)
    distinct, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    target_fraction = np.bincount(inverse, weights=labels) / counts
    posterior = isotonic_regression(target_fraction, weights=counts).x
    num_targets = labels.sum()
    prior_log_odds = math.log(num_targets / (len(labels) - num_targets))
    with np.errstate(divide="ignore"):  # posteriors of exactly 0 or 1 give infinite LLRs
        llrs = np.log(posterior) - np.log1p(-posterior) - prior_log_odds
    return compute_cllr(llrs[inverse], labels)


def evaluate(
    scores: np.ndarray, labels: np.ndarray, llrs: Optional[np.ndarray] = None
) -> Dict[str, float]:
    """Every metric of the results table for one trial list and back end.

    :param llrs: the calibrated scores, for Cllr; without them Cllr is left out.
    """
    rates = error_rates(scores, labels)  # sorted once for the EER and every minDCF
    eer, eer_threshold = eer_from_rates(*rates)
    result = {"eer": float(eer), "eer_threshold": float(eer_threshold)}
    for p_target in DCF_TARGET_PRIORS:
        result[f"min_dcf_{p_target}"] = float(min_dcf_from_rates(*rates, p_target)[0])
    if llrs is not None:
        result["cllr"] = compute_cllr(llrs, labels)
    result["min_cllr"] = compute_min_cllr(scores, labels)
    result["num_trials"] = int(len(labels))
    result["num_targets"] = int(np.sum(labels))
    return result


def _check(
    scores: np.ndarray, labels: np.ndarray, allow_infinite: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    if labels.all() or not labels.any():
        raise ValueError("the metrics need both target and non-target trials")
    if np.isnan(scores).any() or not (allow_infinite or np.isfinite(scores).all()):
        raise ValueError("scores must be finite numbers")
    return scores, labels
