"""Calibration: recovery of a known LLR, quality measures, thresholds, the saved file."""

import json
import math

import numpy as np
import pytest

from oskdft.scoring.calibration import (
    Calibration,
    fit_calibration,
    load_calibration,
    quality_features,
    save_calibrations,
)
from oskdft.scoring.metrics import compute_cllr
from oskdft.utils.errors import InputError


def gaussian_scores(rng, n, target_mean, nontarget_mean, sigma, shift=0.0):
    labels = rng.random(n) < 0.4
    scores = np.where(labels, target_mean, nontarget_mean) + sigma * rng.normal(size=n) + shift
    return scores, labels


def test_recovers_known_llr_of_equal_variance_gaussians():
    # Targets N(2, 1.5^2), non-targets N(-1, 1.5^2): LLR(s) = (3 s - 1.5) / 2.25, whatever the
    # proportion of targets in the trials.
    rng = np.random.default_rng(0)
    scores, labels = gaussian_scores(rng, 40000, 2.0, -1.0, 1.5)
    cal = fit_calibration(scores, labels)
    assert cal.scale == pytest.approx(3 / 2.25, rel=0.03)
    assert cal.offset == pytest.approx(-1.5 / 2.25, abs=0.03)
    assert cal.quality_weights is None
    # Calibrated scores cost no more than the true LLR on fresh trials.
    fresh, fresh_labels = gaussian_scores(rng, 40000, 2.0, -1.0, 1.5)
    true_cllr = compute_cllr((3 * fresh - 1.5) / 2.25, fresh_labels)
    assert compute_cllr(cal(fresh), fresh_labels) == pytest.approx(true_cllr, abs=0.005)


def test_quality_term_recovers_duration_dependent_shift():
    # Both classes' scores shift by 0.8 log(shorter duration), so the LLR must undo that shift.
    rng = np.random.default_rng(1)
    n = 40000
    enrol_dur, test_dur = rng.uniform(1, 20, n), rng.uniform(1, 20, n)
    q = quality_features(enrol_dur, test_dur)
    drift = 0.8 * q[:, 0]
    scores, labels = gaussian_scores(rng, n, 1.0, -1.0, 1.0, shift=drift)
    cal = fit_calibration(scores, labels, quality=q)
    # True LLR = 2 (s - drift) = 2 s - 1.6 log(shorter).
    assert cal.scale == pytest.approx(2.0, rel=0.05)
    assert cal.quality_weights[0] == pytest.approx(-1.6, abs=0.1)
    assert cal.quality_weights[1] == pytest.approx(0.0, abs=0.1)
    assert cal.offset == pytest.approx(0.0, abs=0.15)
    with pytest.raises(ValueError, match="durations"):
        cal(scores)
    assert cal(scores, enrol_dur, test_dur).shape == (n,)


def test_thresholds_and_separable_trials_stay_finite():
    rng = np.random.default_rng(2)
    scores, labels = gaussian_scores(rng, 5000, 1.0, -1.0, 0.7)
    cal = fit_calibration(scores, labels, p_targets=(0.01, 0.001))
    assert cal.threshold("p_target=0.01") == pytest.approx(math.log(99))
    assert cal.threshold("p_target=0.001") == pytest.approx(math.log(999))
    # At the EER threshold the two error rates on the calibrated scores agree.
    llr = cal(scores)
    t = cal.threshold("eer")
    assert np.mean(llr[labels] < t) == pytest.approx(np.mean(llr[~labels] >= t), abs=0.01)
    assert cal.score_threshold("eer") == pytest.approx((t - cal.offset) / cal.scale)
    with pytest.raises(KeyError, match="available: eer"):
        cal.threshold("p_target=0.5")
    separable = fit_calibration(np.where(labels, 1.0, -1.0), labels)
    assert np.isfinite(separable.scale) and separable.scale > 1


def test_saved_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "calibration.json"
    cals = {
        "cosine": Calibration(2.0, -1.0, thresholds={"eer": 0.1}),
        "plda": Calibration(0.5, 0.2, [0.1, -0.2], {"eer": 0.3}),
    }
    save_calibrations(path, cals, default_backend="plda", trained_on="data/valid/trials_valid")
    assert load_calibration(path) == ("plda", cals["plda"])
    assert load_calibration(path, "cosine") == ("cosine", cals["cosine"])
    assert json.loads(path.read_text())["trained_on"] == "data/valid/trials_valid"
    with pytest.raises(InputError, match="no calibration for back end 'asnorm'"):
        load_calibration(path, "asnorm")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json: not a calibration file"):
        load_calibration(tmp_path / "bad.json")
