"""EER, minDCF, Cllr and min Cllr against brute-force evaluations of their definitions."""

import math
from itertools import pairwise

import numpy as np
import pytest

from oskdft.scoring.metrics import (
    compute_cllr,
    compute_eer,
    compute_min_cllr,
    compute_min_dcf,
    error_rates,
    evaluate,
)


def brute_force_points(scores, labels):
    """(P_miss, P_fa) by counting, at every distinct score and at +inf (reject everything)."""
    targets, nontargets = scores[labels], scores[~labels]
    thresholds = sorted(set(scores.tolist())) + [math.inf]
    return [(float(np.mean(targets < t)), float(np.mean(nontargets >= t))) for t in thresholds]


def brute_force_eer(scores, labels):
    """Where the polyline through the DET points meets the line P_miss = P_fa."""
    points = brute_force_points(scores, labels)
    for (miss_a, fa_a), (miss_b, fa_b) in pairwise(points):
        if miss_a - fa_a <= 0 < miss_b - fa_b:
            w = (fa_a - miss_a) / ((miss_b - miss_a) - (fa_b - fa_a))
            return miss_a + w * (miss_b - miss_a)
    raise AssertionError("no crossing")


def brute_force_min_dcf(scores, labels, p_target):
    costs = [
        p_target * miss + (1 - p_target) * fa for miss, fa in brute_force_points(scores, labels)
    ]
    return min(costs) / min(p_target, 1 - p_target)


def random_trials(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.2 * labels
    if ties:
        scores = np.round(scores * 3) / 3  # many equal scores across both classes
    return scores, labels


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_eer_and_min_dcf_equal_brute_force(seed, ties):
    scores, labels = random_trials(seed, ties=ties)
    assert compute_eer(scores, labels)[0] == pytest.approx(brute_force_eer(scores, labels))
    for p_target in (0.5, 0.01, 0.001):
        got, threshold = compute_min_dcf(scores, labels, p_target)
        assert got == pytest.approx(brute_force_min_dcf(scores, labels, p_target))
        # The returned threshold attains the minimum.
        miss = np.mean(scores[labels] < threshold)
        fa = np.mean(scores[~labels] >= threshold)
        norm = min(p_target, 1 - p_target)
        assert (p_target * miss + (1 - p_target) * fa) / norm == pytest.approx(got)


def test_hand_made_cases():
    labels = np.array([True, True, False, False])
    # Separated: no errors, threshold at the lowest target score.
    assert compute_eer(np.array([3.0, 4.0, 1.0, 2.0]), labels) == (0.0, 3.0)
    # Reversed: every decision wrong.
    assert compute_eer(np.array([1.0, 2.0, 3.0, 4.0]), labels)[0] == 1.0
    # Targets 1, 3 and non-targets 2, 4: at t = 3 one miss of two, one false alarm of two.
    assert compute_eer(np.array([1.0, 3.0, 2.0, 4.0]), labels) == (0.5, 3.0)
    # Targets 2, 3, 4 and non-targets 1, 3 (a tie). At t = 3: P_miss 1/3, P_fa 1/2; at t = 4:
    # P_miss 2/3, P_fa 0. The segment between them meets the diagonal a fifth of the way along:
    # EER 1/3 + 1/15 = 0.4 at threshold 3.2.
    scores = np.array([2.0, 3.0, 4.0, 1.0, 3.0])
    labels5 = np.array([True, True, True, False, False])
    eer, threshold = compute_eer(scores, labels5)
    assert eer == pytest.approx(0.4)
    assert threshold == pytest.approx(3.2)
    # minDCF at p = 0.5 is P_miss + P_fa at its best threshold: 0 + 1/2 at t = 2.
    assert compute_min_dcf(scores, labels5, 0.5) == (pytest.approx(0.5), 2.0)


def test_eer_is_invariant_to_monotonic_maps_and_symmetric():
    scores, labels = random_trials(4)
    eer = compute_eer(scores, labels)[0]
    assert compute_eer(np.tanh(scores) * 5 + 2, labels)[0] == pytest.approx(eer)
    # Swapping classes and negating the scores gives the same curve mirrored.
    assert compute_eer(-scores, ~labels)[0] == pytest.approx(eer)


def test_error_rates_run_from_accept_all_to_reject_all():
    scores, labels = random_trials(5, ties=True)
    thresholds, p_miss, p_fa = error_rates(scores, labels)
    assert (p_miss[0], p_fa[0], p_miss[-1], p_fa[-1]) == (0.0, 1.0, 1.0, 0.0)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(np.diff(p_miss) >= 0) and np.all(np.diff(p_fa) <= 0)


def test_cllr_of_known_llrs():
    labels = np.array([True, False])
    # A target at LLR log 3 costs log2(1 + 1/3); a non-target at -log 3 the same.
    llr = math.log(3)
    expected = math.log2(1 + 1 / 3)
    assert compute_cllr(np.array([llr, -llr]), labels) == pytest.approx(expected)
    assert compute_cllr(np.array([50.0, -50.0]), labels) == pytest.approx(0.0, abs=1e-12)


def test_min_cllr_hand_made():
    # Sorted: 1 (target), 2 (non-target), 3 (target). PAV pools the first two at posterior 1/2,
    # the last at 1; with prior odds 2 the LLRs are -log 2 and +inf.
    scores, labels = np.array([1.0, 3.0, 2.0]), np.array([True, True, False])
    expected = (math.log(3) / 2 + math.log(1.5)) / (2 * math.log(2))
    assert compute_min_cllr(scores, labels) == pytest.approx(expected)


def test_min_cllr_is_below_any_calibration_and_pools_ties():
    scores, labels = random_trials(6, ties=True)
    min_cllr = compute_min_cllr(scores, labels)
    for scale in (0.5, 1.0, 2.0, 4.0):
        for offset in (-2.0, -1.0, 0.0, 1.0):
            assert min_cllr <= compute_cllr(scale * scores + offset, labels) + 1e-12
    # Separable scores: perfect; useless scores: close to 1 but not above.
    separated = np.where(labels, 1.0, -1.0)
    assert compute_min_cllr(separated, labels) == pytest.approx(0.0)
    assert compute_min_cllr(np.zeros(len(labels)), labels) == pytest.approx(1.0)
    # Order of tied scores must not matter.
    order = np.random.default_rng(0).permutation(len(scores))
    assert compute_min_cllr(scores[order], labels[order]) == pytest.approx(min_cllr)


def test_evaluate_and_bad_input():
    scores, labels = random_trials(7)
    result = evaluate(scores, labels, llrs=scores)
    assert result["num_trials"] == 300 and result["num_targets"] == labels.sum()
    assert set(result) >= {"eer", "min_dcf_0.01", "min_dcf_0.001", "cllr", "min_cllr"}
    assert "cllr" not in evaluate(scores, labels)
    with pytest.raises(ValueError, match="both target and non-target"):
        compute_eer(scores, np.ones(300, bool))
    with pytest.raises(ValueError, match="300 scores but 2 labels"):
        compute_eer(scores, labels[:2])
