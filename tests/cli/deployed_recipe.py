"""A recipe working directory in which a tiny random-weight system has been through stage 4
(embeddings), stage 5 (back ends, calibration, metrics) and stage 6 (ONNX export): what
``oskdft verify``, ``embed`` and ``info`` read."""

from itertools import combinations
from pathlib import Path
from typing import Dict

from oskdft.config import save_config
from oskdft.data.kaldi_dir import write_table, write_trials
from oskdft.embedding.extract import extract_embeddings_job
from oskdft.embedding.merge import merge_embeddings
from oskdft.export.onnx import export_system
from oskdft.model_dir import save_final
from oskdft.scoring.pipeline import score_system
from tests.embedding.tiny_system import scratch_config, tiny_model, write_set

SETS = {
    "test": [1.0, 3.0, 7.3, 1.9, 0.8, 2.2, 1.4, 2.6, 1.1],
    "valid": [1.3, 0.7, 2.1, 1.6, 0.9, 2.4],
    "backend": [2.0, 1.0, 1.5, 0.4, 2.6, 1.8],
}
SYSTEM = "sys"
FINAL = f"exp/{SYSTEM}/final"
ONNX = f"exp/{SYSTEM}/export/model.onnx"
MODELS = [FINAL, ONNX]


def speaker(utt: str) -> str:
    return utt.split("-")[0]


def build_deployed_recipe(root: Path) -> Dict[str, Dict[str, str]]:
    """Data dirs with wav.scp, utt2spk and trials for :data:`SETS` (white noise, so the
    scores mean nothing, but every stage's arithmetic runs), and
    ``exp/sys/{config.yaml,final,embeddings,scores,export}``; returns set -> utt -> wav path."""
    data = root / "data"
    wavs = {}
    for seed, (name, seconds) in enumerate(SETS.items()):
        wavs[name] = write_set(root, name, seconds, seed=seed)
        write_table(data / name / "wav.scp", wavs[name])
        write_table(data / name / "utt2spk", {utt: speaker(utt) for utt in wavs[name]})
    for name, trials in (("test", "trials_test"), ("valid", "trials_valid")):
        write_trials(
            data / name / trials,
            [(a, b, speaker(a) == speaker(b)) for a, b in combinations(sorted(wavs[name]), 2)],
        )
    cfg = scratch_config(
        eval={
            "crop_seconds": 1.5,
            "num_crops": 3,
            "batch_seconds": 6.0,
            "backends": ["cosine", "cosine_mean", "fused"],
            "deploy_backend": "cosine_mean",
        }
    )
    system_dir = root / "exp" / SYSTEM
    save_config(cfg, system_dir / "config.yaml")
    save_final(system_dir / "final", tiny_model(cfg), cfg, {})
    extract_embeddings_job(
        system_dir / "final",
        data,
        system_dir / "embeddings",
        list(SETS),
        job=1,
        num_jobs=1,
        device="cpu",
        progress=False,
    )
    merge_embeddings(data, system_dir / "embeddings", list(SETS), num_jobs=1)
    score_system(data, system_dir, ["test"])
    export_system(system_dir / "final", system_dir / "export", data / "test", int8=False)
    return wavs
