"""Scored systems without embeddings: what stage 5 leaves for the results table (score files and
metrics.json, computed by the library's metrics) over one generated trial list, and its
utt2spk."""

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from oskdft.scoring.metrics import evaluate
from oskdft.scoring.trials import Trials, write_scores

LIST = "mini"
SET = "test"


def make_trials(data_dir: Path, speakers: int = 12, utts: int = 6, seed: int = 0) -> Trials:
    """Every pair of ``speakers`` x ``utts`` utterances (one in three non-target pairs kept),
    ``data_dir/test/utt2spk`` and the trial list."""
    rng = np.random.default_rng(seed)
    utt2spk = {f"s{s:02d}-u{u}": f"s{s:02d}" for s in range(speakers) for u in range(utts)}
    keys = sorted(utt2spk)
    enrol, test = [], []
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if utt2spk[a] == utt2spk[b] or rng.random() < 1 / 3:
                enrol.append(a)
                test.append(b)
    labels = np.array([utt2spk[a] == utt2spk[b] for a, b in zip(enrol, test, strict=True)])
    (data_dir / SET).mkdir(parents=True, exist_ok=True)
    (data_dir / SET / "utt2spk").write_text("".join(f"{k} {v}\n" for k, v in utt2spk.items()))
    return Trials(enrol, test, labels)


def speaker_effect(trials: Trials, seed: int = 0) -> np.ndarray:
    """Scores with a per-speaker shift of the target scores (speakers differ in difficulty)."""
    rng = np.random.default_rng(seed)
    speakers = sorted({u.split("-")[0] for u in trials.enrol})
    shift = dict(zip(speakers, rng.normal(size=len(speakers)), strict=True))
    offset = np.array([shift[u.split("-")[0]] for u in trials.enrol])
    return rng.normal(size=len(trials.labels)) + trials.labels * (2.5 + offset)


def write_system(
    exp_dir: Path, name: str, trials: Trials, scores: Dict[str, np.ndarray]
) -> Dict[str, Dict[str, float]]:
    """``exp_dir/name/scores/``: one score file per back end and metrics.json; returns the
    metrics per back end."""
    out = exp_dir / name / "scores"
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for backend, values in scores.items():
        write_scores(out / f"{LIST}.{backend}.score", trials, values)
        results[backend] = evaluate(values, trials.labels, llrs=values)
    metrics = {
        "system": name,
        "backends": list(scores),
        "trial_lists": {
            LIST: {"set": SET, "trials": f"data/{SET}/trials_{LIST}", "results": results}
        },
    }
    (out / "metrics.json").write_text(json.dumps(metrics))
    return results


def write_systems(exp_dir: Path, trials: Trials, systems: Sequence[str], seed: int = 0) -> None:
    """``systems`` with cosine and plda scores: the first is best, each next one noisier."""
    base = speaker_effect(trials, seed)
    rng = np.random.default_rng(seed + 1)
    for i, name in enumerate(systems):
        write_system(
            exp_dir,
            name,
            trials,
            {backend: base + i * rng.normal(size=len(base)) for backend in ("cosine", "plda")},
        )
