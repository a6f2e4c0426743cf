"""Score calibration: logistic regression from a back end's scores to log-likelihood ratios.

Trained on the validation trials (held-out training speakers), never on test trials. The model is
``llr = scale * score + offset``, plus, optionally, a linear term in quality measures of the
trial: the log durations of its shorter and its longer utterance (a quality measure function as
in WeSpeaker's QMF). The fit minimises Cllr, i.e. cross-entropy with targets and non-targets
weighted equally, so the output is a natural-log likelihood ratio free of the trial list's prior.

A calibrated LLR has the Bayes decision threshold ``log((1 - p) / p)`` at target prior ``p``
(C_miss = C_fa = 1); the equal-error-rate threshold is measured on the validation trials. Both are
stored in ``calibration.json`` with the scale and offset of every back end.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.optimize
import scipy.special

from oskdft.scoring.metrics import compute_eer
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

QUALITY_FEATURES = ("log_min_duration", "log_max_duration")
# Keeps the weights finite when the validation trials are perfectly separable; far too small to
# move a fit on overlapping scores.
L2_PENALTY = 1e-4


def quality_features(enrol_durations: np.ndarray, test_durations: np.ndarray) -> np.ndarray:
    """``(num_trials, 2)``: log seconds of the shorter and of the longer utterance of each trial."""
    shorter = np.minimum(enrol_durations, test_durations)
    longer = np.maximum(enrol_durations, test_durations)
    return np.log(np.maximum(np.stack([shorter, longer], axis=1), 1e-2))


def bayes_threshold(p_target: float) -> float:
    """The LLR above which accepting costs less than rejecting, with C_miss = C_fa = 1."""
    return math.log((1 - p_target) / p_target)


@dataclass
class Calibration:
    """``llr = scale * score + offset + quality_weights . quality_features`` and the LLR
    thresholds of named operating points (``eer``, ``p_target=0.01``).

    >>> cal = Calibration(scale=10.0, offset=-5.0, thresholds={"eer": 0.5})
    >>> cal(np.array([0.5, 0.8])).tolist()
    [0.0, 3.0]
    >>> cal.score_threshold("eer")
    0.55
    """

    scale: float
    offset: float
    quality_weights: Optional[List[float]] = None
    thresholds: Dict[str, float] = field(default_factory=dict)

    def __call__(
        self,
        scores: np.ndarray,
        enrol_durations: Optional[np.ndarray] = None,
        test_durations: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Calibrated LLRs; durations (seconds) are required when the model uses them."""
        llr = self.scale * np.asarray(scores, dtype=np.float64) + self.offset
        if self.quality_weights is not None:
            if enrol_durations is None or test_durations is None:
                raise ValueError("this calibration needs the durations of both utterances")
            llr += quality_features(enrol_durations, test_durations) @ self.quality_weights
        return llr

    def threshold(self, operating_point: str = "eer") -> float:
        """The LLR threshold of an operating point: accept a trial when its LLR is >= it."""
        if operating_point not in self.thresholds:
            raise KeyError(
                f"unknown operating point {operating_point!r}; "
                f"available: {', '.join(sorted(self.thresholds))}"
            )
        return self.thresholds[operating_point]

    def score_threshold(self, operating_point: str = "eer") -> float:
        """The same threshold on the raw score (only without quality measures)."""
        if self.quality_weights is not None:
            raise ValueError("with quality measures the raw-score threshold depends on durations")
        return (self.threshold(operating_point) - self.offset) / self.scale


def fit_calibration(
    scores: np.ndarray,
    labels: np.ndarray,
    quality: Optional[np.ndarray] = None,
    p_targets: Tuple[float, ...] = (0.01,),
) -> Calibration:
    """Fit a :class:`Calibration` on labelled trials.

    :param quality: ``(num_trials, 2)`` from :func:`quality_features`, or None for score only.
    :param p_targets: target priors whose Bayes thresholds are stored next to the EER threshold.
    """
    labels = np.asarray(labels, dtype=bool)
    features = np.asarray(scores, dtype=np.float64)[:, None]
    if quality is not None:
        features = np.hstack([features, quality])
    # Standardised features make the problem well conditioned; the weights are mapped back below.
    centre, spread = features.mean(axis=0), np.maximum(features.std(axis=0), 1e-12)
    standard = (features - centre) / spread
    weight = np.where(labels, 0.5 / labels.sum(), 0.5 / (~labels).sum())
    target = labels.astype(np.float64)

    def cost(params: np.ndarray):
        w, b = params[:-1], params[-1]
        llr = standard @ w + b
        # Cross-entropy: -log sigmoid(llr) for targets, -log sigmoid(-llr) for non-targets.
        loss = weight @ np.logaddexp(0.0, np.where(labels, -llr, llr)) + L2_PENALTY * w @ w
        residual = weight * (scipy.special.expit(llr) - target)
        return loss, np.r_[standard.T @ residual + 2 * L2_PENALTY * w, residual.sum()]

    start = np.zeros(features.shape[1] + 1)
    params = scipy.optimize.minimize(
        cost, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-10}
    ).x
    w = params[:-1] / spread
    calibration = Calibration(
        scale=float(w[0]),
        offset=float(params[-1] - w @ centre),
        quality_weights=None if quality is None else w[1:].tolist(),
    )
    calibration.thresholds["eer"] = compute_eer(features @ w + calibration.offset, labels)[1]
    for p_target in p_targets:
        calibration.thresholds[f"p_target={p_target}"] = bayes_threshold(p_target)
    return calibration


def save_calibrations(
    path: Pathlike, calibrations: Dict[str, Calibration], default_backend: str, trained_on: str
) -> None:
    """Write ``calibration.json``: one calibration per back end and the one to deploy."""
    content = {
        "default_backend": default_backend,
        "trained_on": trained_on,
        "quality_features": list(QUALITY_FEATURES),
        "backends": {name: asdict(cal) for name, cal in calibrations.items()},
    }
    with atomic_write(path) as f:
        json.dump(content, f, indent=2)
        f.write("\n")


def load_calibration(path: Pathlike, backend: Optional[str] = None) -> Tuple[str, Calibration]:
    """``backend`` (default: the file's ``default_backend``) and its calibration, from
    ``calibration.json``."""
    try:
        with open(path) as f:
            content = json.load(f)
        backend = backend or content["default_backend"]
        entries = content["backends"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(path, f"not a calibration file: {e}", hint="re-run stage 5") from e
    if backend not in entries:
        raise InputError(
            path,
            f"no calibration for back end {backend!r}",
            hint=f"available: {', '.join(sorted(entries))}",
        )
    return backend, Calibration(**entries[backend])
