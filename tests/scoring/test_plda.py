"""PLDA and LDA: recovery of known covariances, LLR against the closed-form Gaussian ratio."""

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from oskdft.scoring.lda import LDA
from oskdft.scoring.plda import PLDA


def random_spd(rng, dim, scale):
    a = rng.normal(size=(dim, dim))
    return scale * (a @ a.T / dim + 0.5 * np.eye(dim))


def draw(rng, mean, between, within, num_speakers, utts_per_speaker):
    dim = len(mean)
    speakers = np.repeat(np.arange(num_speakers), utts_per_speaker)
    y = rng.multivariate_normal(np.zeros(dim), between, size=num_speakers)
    e = rng.multivariate_normal(np.zeros(dim), within, size=len(speakers))
    return mean + y[speakers] + e, speakers


def test_em_recovers_known_covariances():
    rng = np.random.default_rng(0)
    dim = 3
    mean = np.array([1.0, -2.0, 0.5])
    between, within = random_spd(rng, dim, 2.0), random_spd(rng, dim, 0.5)
    # Uneven utterance counts exercise the per-count grouping of the E step.
    x, speakers = draw(rng, mean, between, within, 4000, 8)
    keep = ~((speakers % 3 == 0) & (np.arange(len(speakers)) % 8 >= 3))
    plda = PLDA.fit(x[keep], speakers[keep], num_iters=30)
    np.testing.assert_allclose(plda.mean, mean, atol=0.08)
    np.testing.assert_allclose(plda.between_covariance, between, atol=0.15 * np.abs(between).max())
    np.testing.assert_allclose(plda.within_covariance, within, atol=0.05 * np.abs(within).max())
    # Kaldi's form: transform whitens W and diagonalises B, psi descending.
    t = plda.transform
    np.testing.assert_allclose(t @ plda.within_covariance @ t.T, np.eye(dim), atol=1e-8)
    np.testing.assert_allclose(t @ plda.between_covariance @ t.T, np.diag(plda.psi), atol=1e-8)
    assert np.all(np.diff(plda.psi) <= 0)


def closed_form_llr(u, v, mean, between, within):
    """log p(u, v | same speaker) - log p(u) p(v), from the joint Gaussians."""
    total = between + within
    joint = np.block([[total, between], [between, total]])
    same = multivariate_normal(np.r_[mean, mean], joint).logpdf(np.r_[u, v])
    apart = multivariate_normal(mean, total).logpdf(u) + multivariate_normal(mean, total).logpdf(v)
    return same - apart


def test_llr_equals_closed_form_gaussian_ratio():
    rng = np.random.default_rng(1)
    dim = 4
    mean = rng.normal(size=dim)
    between, within = random_spd(rng, dim, 1.5), random_spd(rng, dim, 0.7)
    plda = PLDA.from_covariances(mean, within, between)
    x = rng.normal(size=(6, dim)) * 2
    enrol, test = np.array([0, 1, 2, 3, 5]), np.array([1, 1, 4, 0, 2])
    got = plda.llr(plda.project(x, normalize_length=False), enrol, test)
    expected = [
        closed_form_llr(x[e], x[t], mean, between, within) for e, t in zip(enrol, test, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_length_normalised_llr_matches_kaldi_per_trial_formula():
    """Kaldi's TransformIvector (normalize-length) + LogLikelihoodRatio, one trial at a time."""
    rng = np.random.default_rng(2)
    dim = 5
    x, speakers = draw(
        rng, np.zeros(dim), random_spd(rng, dim, 1.0), random_spd(rng, dim, 0.3), 50, 6
    )
    plda = PLDA.fit(x, speakers, num_iters=5)

    def kaldi_transform(vector):
        y = plda.transform @ (vector - plda.mean)
        return y * math.sqrt(dim / np.sum(y**2 / (plda.psi + 1.0)))

    def kaldi_llr(u, v):
        psi = plda.psi
        given_mean, given_var = psi / (psi + 1.0) * u, 1.0 + psi / (psi + 1.0)
        given = -0.5 * np.sum(np.log(given_var) + (v - given_mean) ** 2 / given_var)
        without = -0.5 * np.sum(np.log(1.0 + psi) + v**2 / (1.0 + psi))
        return given - without  # the log(2 pi) terms cancel

    enrol, test = rng.integers(0, len(x), 40), rng.integers(0, len(x), 40)
    got = plda.llr(plda.project(x), enrol, test)
    expected = [
        kaldi_llr(kaldi_transform(x[e]), kaldi_transform(x[t]))
        for e, t in zip(enrol, test, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_lda_whitens_within_and_keeps_discriminant_directions():
    rng = np.random.default_rng(3)
    dim = 6
    # Speakers differ only along the first two axes (strongly on the first).
    between = np.diag([4.0, 1.0, 0, 0, 0, 0]) + 1e-9 * np.eye(dim)
    within = random_spd(rng, dim, 0.5)
    x, speakers = draw(rng, np.full(dim, 3.0), between, within, 400, 10)
    lda = LDA.fit(x, speakers, dim=2)
    y = lda(x)
    assert y.shape == (len(x), 2)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-8)
    residual = y - np.stack([y[speakers == s].mean(axis=0) for s in speakers])
    np.testing.assert_allclose(residual.T @ residual / len(x), np.eye(2), atol=0.02)
    # Speakers differ in a rank-2 subspace, so two LDA outputs keep all of the separation
    # (the trace of within^-1 between); a wrong pair of directions would keep less.
    t = lda.transform
    kept = np.trace(np.linalg.solve(t @ within @ t.T, t @ between @ t.T))
    assert kept == pytest.approx(np.trace(np.linalg.solve(within, between)), rel=0.03)
    # The first output is the most discriminant: larger between-speaker variance.
    speaker_means = np.stack([y[speakers == s].mean(axis=0) for s in range(400)])
    assert speaker_means[:, 0].var() > speaker_means[:, 1].var()


def test_fit_handles_speakers_with_one_utterance():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3))
    speakers = np.r_[np.arange(10), np.repeat(np.arange(10, 15), 4)]
    plda = PLDA.fit(x, speakers, num_iters=3)
    assert np.all(np.isfinite(plda.transform)) and np.all(plda.psi >= 0)
    assert plda.llr(plda.project(x), np.array([0]), np.array([1])).shape == (1,)
