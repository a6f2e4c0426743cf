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
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.optimize import isotonic_regression

# The operating points the results table reports (NIST SRE / VoxSRC: C_miss = C_fa = 1).
DCF_TARGET_PRIORS = (0.01, 0.001)


def error_rates(
    scores: np.ndarray, labels: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, p_miss, p_fa)`` at every distinct score and just above the largest.

    ``p_miss`` rises from 0 to 1 and ``p_fa`` falls from 1 to 0 as the threshold grows.
    """
    scores, labels = _check(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # First position of each distinct score: everything before it is rejected at that threshold.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    targets_below = np.r_[0, np.cumsum(sorted_labels)]
    nontargets_below = np.r_[0, np.cumsum(~sorted_labels)]
    cuts = np.r_[starts, len(scores)]
    num_targets, num_nontargets = targets_below[-1], nontargets_below[-1]
    p_miss = targets_below[cuts] / num_targets
    p_fa = 1.0 - nontargets_below[cuts] / num_nontargets
    thresholds = np.r_[sorted_scores[starts], np.nextafter(sorted_scores[-1], np.inf)]
    return thresholds, p_miss, p_fa


def compute_eer(scores: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """Equal error rate (a fraction in [0, 1]) and the threshold where it is reached.

    The DET operating points are joined by straight lines; the EER is where that path crosses
    ``P_miss = P_fa``, and the threshold is interpolated the same way.

    :param scores: one score per trial, higher means more likely the same speaker.
    :param labels: True (or 1) for target trials.
    """
    return _eer(*error_rates(scores, labels))


def _eer(thresholds: np.ndarray, p_miss: np.ndarray, p_fa: np.ndarray) -> Tuple[float, float]:
    gap = p_miss - p_fa  # rises from -1 to +1, changing at every step
    a = np.flatnonzero(gap <= 0)[-1]
    b = min(a + 1, len(gap) - 1)
    w = 0.0 if b == a else gap[a] / (gap[a] - gap[b])
    eer = p_miss[a] + w * (p_miss[b] - p_miss[a])
    threshold = thresholds[a] + w * (thresholds[b] - thresholds[a])
    return float(eer), float(threshold)


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
    return _min_dcf(*error_rates(scores, labels), p_target, c_miss, c_fa)


def _min_dcf(thresholds: np.ndarray, p_miss: np.ndarray, p_fa: np.ndarray, p_target: float,
             c_miss: float = 1.0, c_fa: float = 1.0) -> Tuple[float, float]:
    dcf = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    best = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1 - p_target))
    return float(dcf[best] / norm), float(thresholds[best])


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
    eer, eer_threshold = _eer(*rates)
    result = {"eer": eer, "eer_threshold": eer_threshold}
    for p_target in DCF_TARGET_PRIORS:
        result[f"min_dcf_{p_target}"] = _min_dcf(*rates, p_target)[0]
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
