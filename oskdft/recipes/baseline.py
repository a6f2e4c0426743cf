"""The trivial baseline: an utterance's mean MFCC (or log-mel) vector, compared by cosine.

It has no model and learns nothing, so its EER says how much of a trial list can be solved
from the average spectrum alone: what a corpus demands of a trained system. On egs/mini's
synthetic corpus, where every session has its own microphone and room, it must fail badly
(egs/mini/README.md reports it).

Features are Kaldi's (``torchaudio.compliance.kaldi``: 25 ms frames every 10 ms, 40 mel bands,
no dither). The score is stage 5's ``cosine_mean`` back end with the mean embedding of the
utterances scored: the cosine after subtracting it, so it compares what is particular to each
utterance.
"""

from __future__ import annotations

import logging
from typing import Dict, Mapping, Sequence

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from oskdft.data.audio import SAMPLE_RATE, load_audio
from oskdft.data.kaldi_dir import Trial, read_data_dir
from oskdft.scoring.backends import CosineMean
from oskdft.scoring.embeddings import Embeddings
from oskdft.scoring.metrics import compute_eer
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.registry import Registry

logger = logging.getLogger(__name__)

# Frame-level features: (num_samples,) float waveform in [-1, 1] -> (frames, dims).
FEATURES: Registry = Registry("baseline feature")
NUM_MEL_BINS = 40


@FEATURES.register("mfcc")
def mfcc(waveform: torch.Tensor) -> torch.Tensor:
    """MFCCs c1..c19. c0, the frame's overall level, is left out: with it, the recording
    level would decide the score."""
    feats = kaldi.mfcc(
        _int16_scale(waveform),
        num_ceps=20,
        num_mel_bins=NUM_MEL_BINS,
        sample_frequency=SAMPLE_RATE,
        dither=0.0,
    )
    return feats[:, 1:]


@FEATURES.register("logmel")
def log_mel(waveform: torch.Tensor) -> torch.Tensor:
    """Log mel filterbank energies, level included."""
    return kaldi.fbank(
        _int16_scale(waveform), num_mel_bins=NUM_MEL_BINS, sample_frequency=SAMPLE_RATE, dither=0.0
    )


def _int16_scale(waveform: torch.Tensor) -> torch.Tensor:
    # Kaldi's feature code expects 16-bit sample values (its energy floor is set for them).
    return waveform[None] * 32768.0


def mean_feature_embeddings(
    wav_scp: Mapping[str, str], features: Sequence[str] = ("mfcc",)
) -> Dict[str, Dict[str, np.ndarray]]:
    """One embedding per recording and feature: the mean over frames of the feature vectors.
    Each recording is decoded once for all ``features``.

    :param wav_scp: recording id -> path or piped command, as in a Kaldi ``wav.scp``.
    :return: feature -> recording id -> embedding.
    """
    extractors = {feature: FEATURES.get(feature) for feature in features}
    embeddings: Dict[str, Dict[str, np.ndarray]] = {feature: {} for feature in features}
    for utt, entry in wav_scp.items():
        waveform = torch.from_numpy(load_audio(entry))
        for feature, extract in extractors.items():
            embeddings[feature][utt] = extract(waveform).mean(dim=0).numpy().astype(np.float64)
    return embeddings


def centred_cosine_scores(
    embeddings: Mapping[str, np.ndarray], trials: Sequence[Trial]
) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings, after subtracting the mean of all
    ``embeddings`` (the ``cosine_mean`` back end, fitted on them).

    >>> emb = {"a": np.array([3.0, 1.0]), "b": np.array([3.0, -1.0]), "c": np.array([0.0, 0.0])}
    >>> centred_cosine_scores(emb, [("a", "b", True), ("a", "c", False)]).round(3).tolist()
    [0.0, -0.707]
    """
    utts = sorted(embeddings)
    data = Embeddings(utts, np.stack([embeddings[utt] for utt in utts]))
    backend = CosineMean().fit(data, speakers=np.arange(len(utts)))  # it ignores speakers
    enrol = np.array([data.index[t[0]] for t in trials])
    test = np.array([data.index[t[1]] for t in trials])
    return backend.score(data, enrol, test)


def baseline_eers(
    data_dir: Pathlike, features: Sequence[str] = ("mfcc", "logmel")
) -> Dict[str, Dict[str, float]]:
    """EER (a fraction) of the baseline with each feature on every ``trials_*`` list of a
    Kaldi data dir: ``{trials_name: {feature: eer}}``.

    Only the utterances named in some trial list are read.
    """
    for feature in features:  # unknown names fail now, not after minutes of extraction
        FEATURES.get(feature)
    data = read_data_dir(data_dir)
    if data.segments is not None:
        raise InputError(
            data.path / "segments",
            "the baseline reads whole recordings only",
            hint="score a data dir without segments",
        )
    needed = {utt for trials in data.trials.values() for t in trials for utt in t[:2]}
    wav_scp = {utt: entry for utt, entry in data.wav_scp.items() if utt in needed}
    logger.info("%s: mean %s of %d utterances", data_dir, ", ".join(features), len(wav_scp))
    embeddings = mean_feature_embeddings(wav_scp, features)
    results: Dict[str, Dict[str, float]] = {name: {} for name in data.trials}
    for name, trials in data.trials.items():
        labels = np.array([t[2] for t in trials])
        for feature in features:
            scores = centred_cosine_scores(embeddings[feature], trials)
            results[name][feature] = compute_eer(scores, labels)[0]
    return results
