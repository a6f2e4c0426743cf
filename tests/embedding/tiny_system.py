"""A tiny random-weight speaker model and a generated corpus with cut manifests, for the
stage 4 tests."""

import copy
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import soundfile as sf
import torch
from lhotse import CutSet

from oskdft.config import SystemConfig
from oskdft.data.audio import SAMPLE_RATE, mono_cut, recording_from_entry
from oskdft.layout import manifest_path
from oskdft.models.system import SpeakerModel, build_model
from tests.models.tiny import tiny_arch, tiny_system_config


def scratch_config(**sections) -> SystemConfig:
    """A tiny system whose encoder is built from scratch: pre-LN layers and a LayerNorm CNN,
    so padded batches are exact."""
    cfg = tiny_system_config(**sections)
    cfg.ssl.source = "scratch"
    cfg.ssl.arch = tiny_arch("wav2vec2", pre_ln=True)
    return cfg


def tiny_model(cfg: SystemConfig, seed: int = 0) -> SpeakerModel:
    """``cfg``'s model with random weights, adapters included (their up-projection starts at
    zero, which would hide a lost adapter)."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.param_groups()["adapters"]:
            p.normal_(0, 0.1)
    return model.eval()


def write_set(root: Path, set_name: str, seconds: Sequence[float], seed: int = 0) -> Dict[str, str]:
    """White-noise utterances ``<set>-spkK-uJ`` of the given lengths, and their cut manifest
    ``root/data/manifests/<set>_cuts.jsonl.gz``; returns utterance -> wav path."""
    rng = np.random.default_rng(seed)
    wavs = {}
    for index, duration in enumerate(seconds):
        utt = f"spk{index % 3}-{set_name}-u{index:02d}"
        path = root / "wav" / set_name / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = rng.uniform(0.05, 0.3) * rng.standard_normal(round(duration * SAMPLE_RATE))
        sf.write(str(path), audio.astype(np.float32), SAMPLE_RATE, subtype="FLOAT")
        wavs[utt] = str(path)
    cuts = CutSet.from_cuts(mono_cut(recording_from_entry(utt, path)) for utt, path in wavs.items())
    manifest = manifest_path(root / "data", set_name, "cuts")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    cuts.to_file(manifest)
    return wavs


def embed_alone(model, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(audio)[None])[0].numpy()


def kd_branch_model(model):
    """The KD branch written out: the same weights without any adapter (nor the doubled
    residual), which is what the original's layers computed for a row of the first half."""
    plain = copy.deepcopy(model)
    plain.ssl.adapters, plain.ssl.doubled_residual = None, False
    return plain


def original_fused_score(full_a, full_b, crops_a, crops_b):
    """The original's trial score, term by term: 0.5 (cos of the full utterances + the mean of
    the 25 crop-pair cosines)."""

    def cos(x, y):
        return float(np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y))

    pairs = [cos(a, b) for a in crops_a for b in crops_b]
    return 0.5 * (cos(full_a, full_b) + sum(pairs) / len(pairs))
