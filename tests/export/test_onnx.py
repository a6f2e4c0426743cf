"""Stage 6: ONNX (and TorchScript, int8) export of a tiny model, with its parity check."""

import json
import logging
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from oskdft.data.audio import load_audio
from oskdft.data.kaldi_dir import write_table
from oskdft.embedding.views import pad_batch
from oskdft.export import onnx
from oskdft.export.onnx import (
    ParityError,
    export_onnx,
    export_system,
    fold_weight_norm,
    load_torchscript,
)
from oskdft.inference.deploy import load_deployment, load_scorer
from oskdft.inference.onnx_runtime import OnnxEmbedder
from oskdft.model_dir import TorchEmbedder, load_final, save_final
from oskdft.utils.errors import InputError
from tests.embedding.tiny_system import scratch_config, tiny_model, write_set
from tests.models.tiny import tiny_arch, tiny_system_config

REPO = Path(__file__).resolve().parents[2]
SECONDS = [1.0, 3.0, 7.3, 2.2, 0.8]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """data/test (wav.scp of utterances of SECONDS) and exp/sys/final; stage 5 has not run."""
    root = tmp_path_factory.mktemp("recipe")
    wavs = write_set(root, "test", SECONDS)
    write_table(root / "data" / "test" / "wav.scp", wavs)
    cfg = scratch_config()
    save_final(root / "exp" / "sys" / "final", tiny_model(cfg), cfg, {})
    return root


@pytest.fixture(scope="module")
def stage_6(recipe):
    """run.sh's command, from the recipe directory, with every option on."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(recipe)
        main = runpy.run_path(str(REPO / "local" / "export_model.py"), run_name="test")["main"]
        main(
            [
                "--parity-set",
                "data/test",
                "--int8",
                "true",
                "--torchscript",
                "true",
                "exp/sys/final",
                "exp/sys/export",
            ]
        )
    return recipe / "exp" / "sys" / "export"


def test_stage_6_writes_the_export_and_its_parity(recipe, stage_6):
    assert sorted(p.name for p in stage_6.iterdir()) == [
        "config.yaml",
        "meta.json",
        "model.int8.onnx",
        "model.onnx",
        "model.torchscript.pt",
    ]
    meta = json.loads((stage_6 / "meta.json").read_text())
    final_meta = json.loads((recipe / "exp" / "sys" / "final" / "meta.json").read_text())
    assert meta["system"] == "sys" and meta["embed_dim"] == 8
    assert meta["params"] == final_meta["params"] and meta["params"]["total"] > 0
    assert meta["deploy_backend"] is None  # stage 5 has not run
    parity = meta["parity"]
    assert len(parity["utterances"]) == 4
    assert parity["onnx"]["min_cosine"] > 0.9999 and parity["torchscript"]["min_cosine"] > 0.9999
    # int8 is reported as measured: close, but not exact.
    assert 0.99 < parity["int8"]["min_cosine"] < 1.0
    assert (recipe / "exp" / "sys" / "log" / "export.log").is_file()


def test_onnx_matches_pytorch_at_any_length_and_batch(recipe, stage_6):
    model, _, _ = load_final(recipe / "exp" / "sys" / "final")
    utterances = [load_audio(path) for path in (recipe / "wav" / "test").glob("*.wav")]
    by_length = sorted(utterances, key=len)
    assert [round(len(u) / 16000, 1) for u in by_length] == sorted(SECONDS)
    torch_embedder = TorchEmbedder(model)
    traced = TorchEmbedder(load_torchscript(stage_6 / "model.torchscript.pt"))
    onnx_embedder = OnnxEmbedder(stage_6 / "model.onnx")
    for batch in ([by_length[0]], [by_length[-1]], by_length[1:4], by_length):
        wav, lengths = pad_batch(batch)
        expected = torch_embedder(wav, lengths)
        assert cosines(onnx_embedder(wav, lengths), expected).min() > 0.9999
        assert cosines(traced(wav, lengths), expected).min() > 0.9999
    # A padded row is the utterance alone (the lengths input carries the padding mask).
    wav, lengths = pad_batch(by_length)
    alone = onnx_embedder(*pad_batch(by_length[:1]))
    np.testing.assert_allclose(onnx_embedder(wav, lengths)[:1], alone, atol=1e-4)


@pytest.mark.parametrize(
    "model_type,pre_ln", [("wav2vec2", False), ("hubert", True), ("wavlm", False)]
)
def test_every_family_exports(tmp_path, model_type, pre_ln):
    cfg = scratch_config()
    cfg.ssl.arch = tiny_arch(model_type, pre_ln=pre_ln)
    model = tiny_model(cfg)
    export_onnx(fold_weight_norm(tiny_model(cfg)), tmp_path / "model.onnx")
    rng = np.random.default_rng(0)
    batch = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 48000, 30000)]
    for audio in ([batch[1]], batch):
        wav, lengths = pad_batch(audio)
        assert (
            cosines(
                OnnxEmbedder(tmp_path / "model.onnx")(wav, lengths),
                TorchEmbedder(model)(wav, lengths),
            ).min()
            > 0.9999
        )


def test_a_failed_parity_check_fails_the_stage_and_keeps_the_old_export(recipe, monkeypatch):
    export_dir = recipe / "exp" / "sys" / "export_kept"
    export_dir.mkdir()
    (export_dir / "model.onnx").write_text("the previous export")
    real_export = onnx.export_onnx

    def export_a_changed_model(model, path, **kwargs):
        with torch.no_grad():
            model.ecapa.fc.weight.add_(torch.randn_like(model.ecapa.fc.weight))
        real_export(model, path, **kwargs)

    monkeypatch.setattr(onnx, "export_onnx", export_a_changed_model)
    with pytest.raises(ParityError, match="the onnx export disagrees with PyTorch"):
        export_system(
            recipe / "exp" / "sys" / "final", export_dir, recipe / "data" / "test", int8=False
        )
    assert not [p for p in export_dir.parent.iterdir() if p.name.startswith(".export_kept")]
    assert (export_dir / "model.onnx").read_text() == "the previous export"


def test_an_export_without_stage_5_cannot_decide(stage_6):
    deployment = load_deployment(stage_6)
    with pytest.raises(InputError, match="run stage 5, then stage 6 again"):
        load_scorer(deployment)


def test_an_fbank_system_exports_with_its_filter_bank(recipe, tmp_path):
    """torchaudio's and lhotse's Kaldi fbank do not export (no rfft in the exporter): the
    front end's own does, and matches PyTorch at any length and batch."""
    cfg = tiny_system_config(ssl={"source": "fbank"}, kd={"loss": "none"})
    final = tmp_path / "exp" / "fbank" / "final"
    save_final(final, tiny_model(cfg), cfg, {})
    meta = export_system(final, tmp_path / "exp" / "fbank" / "export", recipe / "data" / "test")
    assert meta["parity"]["onnx"]["min_cosine"] > 0.9999
    # The filter bank stays in float32 in the int8 model (convolutions are not quantised):
    # 0.99995 here; with its Mel filters as a matrix product it read 0.9955.
    assert meta["parity"]["int8"]["min_cosine"] > 0.999
    assert (
        meta["macs_per_second"] == json.loads((final / "meta.json").read_text())["macs_per_second"]
    )
    model, _, _ = load_final(final)
    onnx_embedder = OnnxEmbedder(tmp_path / "exp" / "fbank" / "export" / "model.onnx")
    rng = np.random.default_rng(0)
    batch = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 48000, 30001)]
    for audio in ([batch[1]], batch):
        wav, lengths = pad_batch(audio)
        assert (
            cosines(onnx_embedder(wav, lengths), TorchEmbedder(model)(wav, lengths)).min() > 0.9999
        )


def test_a_system_with_the_originals_options_exports_its_inference_path(recipe, tmp_path, caplog):
    """SpecAugment, LayerDrop and the doubled front end act in training only: the graph is the
    FT branch, and meta.json says that stage 4 put 5 // 2 crops on the KD branch."""
    cfg = scratch_config(
        ssl={
            "spec_augment": True,
            "layer_drop": True,
            "doubled_front_end": True,
            "doubled_residual": True,
            "adapter_init": "normal",
        },
        eval={"original_crop_branches": True},
    )
    final = tmp_path / "exp" / "paper" / "final"
    save_final(final, tiny_model(cfg), cfg, {})
    with caplog.at_level(logging.WARNING):
        meta = export_system(
            final, tmp_path / "exp" / "paper" / "export", recipe / "data" / "test", int8=False
        )
    assert meta["parity"]["onnx"]["min_cosine"] > 0.9999
    assert meta["kd_crops_in_stage4"] == 2
    assert "fused score differs from stage 5's" in caplog.text
