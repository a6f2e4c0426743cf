#!/usr/bin/env python3
"""Scoring speed at the size of VoxCeleb1-E: the vectorised back ends against per-trial loops.

145,000 random 192-d embeddings of 1,251 speakers and 580,000 trials (half target). Each back end
scores all trials with oskdft.scoring (gathered row-wise dot products) and with a per-trial Python
loop in the style of many recipes:

- cosine: normalise both embeddings and take their dot product, trial by trial;
- PLDA: embeddings projected once per utterance (as Kaldi does), then Kaldi's LogLikelihoodRatio
  formula trial by trial;
- AS-norm: each trial scores both of its utterances against the cohort and takes the top-N.

A full loop would take minutes (AS-norm: hours), so the loops are timed on --loop-trials trials
and scaled linearly to all trials. Vectorised and loop runs alternate, --repeats times; medians
are reported. Then PLDA training (LDA to 150, 10 EM iterations) on --train-embeddings embeddings.

Usage: . ./path.sh && python bench/scoring.py [--repeats 3] [--loop-trials 20000] \\
           [--train-embeddings 1000000]
"""

import statistics
import time

import numpy as np

from oskdft.cli.common import make_parser
from oskdft.config import EvalConfig
from oskdft.scoring.backends import build_backend
from oskdft.scoring.embeddings import Embeddings, length_normalize


def random_embeddings(rng, num_utts, num_speakers, dim=192):
    """Speaker-structured random embeddings: a speaker centre plus per-utterance noise."""
    speakers = rng.integers(0, num_speakers, num_utts)
    centres = rng.normal(size=(num_speakers, dim)).astype(np.float32)
    vectors = centres[speakers] + rng.normal(size=(num_utts, dim)).astype(np.float32)
    return Embeddings([f"u{i}" for i in range(num_utts)], vectors), speakers


def random_trials(rng, speakers, num_trials):
    """Half target trials (same speaker, different utterance when possible), half random."""
    enrol = rng.integers(0, len(speakers), num_trials)
    test = rng.integers(0, len(speakers), num_trials)
    order = np.argsort(speakers, kind="stable")
    starts = np.searchsorted(speakers[order], speakers[enrol[::2]])
    counts = np.bincount(speakers, minlength=speakers.max() + 1)[speakers[enrol[::2]]]
    test[::2] = order[starts + rng.integers(0, counts)]
    return enrol, test


def loop_cosine(data, enrol, test):
    x = data.vectors
    return np.array(
        [
            x[e] @ x[t] / (np.linalg.norm(x[e]) * np.linalg.norm(x[t]))
            for e, t in zip(enrol, test, strict=True)
        ]
    )


def loop_plda(backend, data, enrol, test):
    plda = backend.plda
    projected = plda.project(backend.preprocess(data.vectors))
    psi = plda.psi
    given_var = 1.0 + psi / (psi + 1.0)
    without_var = 1.0 + psi
    scores = np.empty(len(enrol))
    for i, (e, t) in enumerate(zip(enrol, test, strict=True)):
        u, v = projected[e], projected[t]
        given = -0.5 * np.sum(np.log(given_var) + (v - psi / (psi + 1.0) * u) ** 2 / given_var)
        without = -0.5 * np.sum(np.log(without_var) + v**2 / without_var)
        scores[i] = given - without
    return scores


def loop_asnorm(backend, data, enrol, test):
    unit = length_normalize(data.vectors - backend.mean)
    top_n = backend.top_n
    scores = np.empty(len(enrol))
    for i, (e, t) in enumerate(zip(enrol, test, strict=True)):
        raw = unit[e] @ unit[t]
        stats = []
        for row in (e, t):
            top = np.sort(backend.cohort @ unit[row])[-top_n:]
            stats.append((top.mean(), top.std()))
        (mu_e, sd_e), (mu_t, sd_t) = stats
        scores[i] = 0.5 * ((raw - mu_e) / sd_e + (raw - mu_t) / sd_t)
    return scores


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def scoring_table(args, rng, cfg):
    """Print the vectorised-against-loop table, checking both give the same scores."""
    data, speakers = random_embeddings(rng, args.utterances, args.speakers)
    enrol, test = random_trials(rng, speakers, args.trials)
    # Back-end set: 20 utterances of each VoxCeleb2-dev-sized speaker (mean, PLDA, cohort).
    train, train_speakers = random_embeddings(rng, 20 * args.train_speakers, args.train_speakers)
    cosine = build_backend("cosine", cfg)
    plda = build_backend("plda", cfg).fit(train, train_speakers)
    asnorm = build_backend("asnorm", cfg).fit(train, train_speakers)

    cases = [
        (
            "cosine",
            lambda e, t: cosine.score(data, e, t),
            lambda e, t: loop_cosine(data, e, t),
            args.loop_trials,
        ),
        (
            "PLDA",
            lambda e, t: plda.score(data, e, t),
            lambda e, t: loop_plda(plda, data, e, t),
            args.loop_trials,
        ),
        (
            "AS-norm",
            lambda e, t: asnorm.score(data, e, t),
            lambda e, t: loop_asnorm(asnorm, data, e, t),
            max(args.loop_trials // 20, 1),
        ),
    ]
    print(
        f"{args.utterances:,} embeddings of 192 dims, {args.trials:,} trials, "
        f"{args.repeats} interleaved repeats, medians"
    )
    print("| back end | vectorised (s) | per-trial loop (s, scaled) | loop timed on | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, vectorised, loop, loop_trials in cases:
        vec_times, loop_times = [], []
        for _ in range(args.repeats):
            seconds, scores = timed(vectorised, enrol, test)
            vec_times.append(seconds)
            seconds, loop_scores = timed(loop, enrol[:loop_trials], test[:loop_trials])
            loop_times.append(seconds * args.trials / loop_trials)
            # Same numbers both ways (the loop runs in float64, the vectorised cosine in float32).
            np.testing.assert_allclose(loop_scores, scores[:loop_trials], rtol=1e-3, atol=1e-3)
        vec, per_trial = statistics.median(vec_times), statistics.median(loop_times)
        print(
            f"| {name} | {vec:.2f} | {per_trial:.1f} | {loop_trials:,} trials | "
            f"{per_trial / vec:.0f}x |"
        )


def main():
    parser = make_parser(__doc__)
    parser.add_argument("--utterances", type=int, default=145_000)
    parser.add_argument("--speakers", type=int, default=1_251)
    parser.add_argument("--trials", type=int, default=580_000)
    parser.add_argument(
        "--loop-trials",
        type=int,
        default=20_000,
        help="trials the cosine/PLDA loops run on (AS-norm: a twentieth)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-embeddings", type=int, default=1_000_000)
    parser.add_argument("--train-speakers", type=int, default=5_994)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    cfg = EvalConfig()
    # In a function of its own so that its back ends and data are freed before the big fit.
    scoring_table(args, rng, cfg)
    big, big_speakers = random_embeddings(rng, args.train_embeddings, args.train_speakers)
    seconds, _ = timed(build_backend("plda", cfg).fit, big, big_speakers)
    print(
        f"\nPLDA training (mean, LDA 192 -> {cfg.lda_dim}, length norm, {cfg.plda_iters} EM "
        f"iterations) on {args.train_embeddings:,} embeddings of {args.train_speakers:,} "
        f"speakers: {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
