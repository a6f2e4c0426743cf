"""Stage 6: a trained system as one ONNX graph from waveform to embedding, checked against PyTorch.

The graph is the inference path of :class:`~oskdft.models.system.SpeakerModel` (SSL encoder on
its FT branch, adapters included, or the filter bank of an fbank system; then ECAPA-TDNN)::

    wav      float32 [batch, samples]   16 kHz mono in [-1, 1], rows zero-padded at the end
    lengths  int64   [batch]            valid samples of each row
    ->
    embedding float32 [batch, embed_dim]

Batch and length are both dynamic, and ``lengths`` carries the padding masks, so one call can
embed utterances of different lengths, as stage 4 does (batch them by length; rows of a model
with a LayerNorm CNN come out as if alone). It is exported with the TorchScript-based exporter
(``dynamo=False``): for a tiny test model it took about a second where the ``torch.export``
(dynamo) exporter took 36 s, for the same parity (torch 2.14, onnxscript 0.7); every family
(wav2vec 2.0, HuBERT, WavLM, pre- and post-LN) passes parity at several lengths and batch sizes.
Weight norm (the positional convolution's) is folded into plain weights first: the graph
computes less, and dynamic int8 quantisation needs constant convolution weights.

Under ``eval.original_crop_branches`` (the original's evaluation quirk: stage 4 embeds each
utterance's first ``num_crops // 2`` crops on the KD branch) the graph is still the inference
path, so ``oskdft verify`` embeds every crop on the FT branch: its full-utterance back ends
match stage 5, its ``fused`` score does not (nor does that score's calibration, fitted on stage
5's). ``meta.json`` records it (``kd_crops_in_stage4``) and the export logs a warning.

:func:`export_system` writes the export directory (replaced as a whole, only when complete)::

    export/
      model.onnx           the graph above
      model.int8.onnx      optional: dynamic int8 quantisation of model.onnx (CPU)
      model.torchscript.pt optional: the same model traced with torch.jit (deprecated in torch)
      meta.json            what it is: system, teacher, parameters, compute, inputs, audio
                           rule, parity
      config.yaml          the system's training config (final/config.yaml)
      calibration.json, metrics.json, <backend>.npz   stage 5's files, when it has run

**Parity**: real utterances of an evaluation set are embedded by PyTorch and by each export,
every utterance alone and all of them in one padded batch. The stage fails when an fp32 export
(ONNX, TorchScript) has a cosine below :data:`PARITY_MIN_COSINE` to PyTorch on any row; the
int8 model's figure is recorded and logged, never hidden, but does not fail the stage.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn
from torch.nn.utils import parametrize

from oskdft.data.audio import SAMPLE_RATE, load_audio
from oskdft.data.kaldi_dir import read_table
from oskdft.embedding.views import kd_crops, pad_batch
from oskdft.inference.deploy import Embedder
from oskdft.inference.onnx_runtime import OnnxEmbedder
from oskdft.layout import (
    CALIBRATION_NAME,
    CONFIG_NAME,
    INT8_NAME,
    META_NAME,
    METRICS_NAME,
    ONNX_NAME,
    SCORES_DIR,
    TORCHSCRIPT_NAME,
)
from oskdft.model_dir import CONFIG_NAME as FINAL_CONFIG_NAME
from oskdft.model_dir import TorchEmbedder, final_fingerprint, load_final
from oskdft.scoring.calibration import load_calibration
from oskdft.utils.io import Pathlike, atomic_dir

OPSET = 18
PARITY_MIN_COSINE = 0.9999
INT8_OPS = ["MatMul", "Gemm"]
AUDIO_RULE = (
    "first channel of multi-channel audio; any other sample rate resampled to 16 kHz with "
    "torchaudio's sinc_interp_hann filter (6 zero crossings, roll-off 0.99), as lhotse does"
)


class ParityError(RuntimeError):
    """An export's embeddings differ from PyTorch's."""


def fold_weight_norm(model: nn.Module) -> nn.Module:
    """Replace every parametrised weight (weight norm) of ``model`` by its current value, in
    place; the outputs do not change. Returns ``model``.

    Works on the model itself, never on a deep copy: a copy shares the parametrised class with
    the original, and removing the parametrisation from one breaks the other (torch 2.14).
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            # torch types a submodule attribute as Tensor | Module; this one is a ModuleDict.
            for name in list(cast(nn.ModuleDict, module.parametrizations)):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def _example_batch() -> Tuple[torch.Tensor, torch.Tensor]:
    """Two rows of different lengths, so the trace takes the padding-mask path even in code
    that skips the mask when no row is padded (Hugging Face's mask code does so outside
    tracing, and checks for tracing; the tracer would record only the branch taken)."""
    generator = torch.Generator().manual_seed(0)
    wav = 0.1 * torch.randn(2, SAMPLE_RATE, generator=generator)
    return wav, torch.tensor([SAMPLE_RATE, SAMPLE_RATE * 3 // 4])


def export_onnx(model: nn.Module, path: Pathlike, opset: int = OPSET) -> None:
    """Write ``model`` (``forward(wav, lengths)``) as ONNX with dynamic batch and length."""
    model = model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer's warnings are about Python values it freezes (shape checks in Hugging
        # Face's masking code); parity at other lengths and batch sizes checks the result.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # This exporter is deprecated in torch; it is chosen knowingly (module docstring).
        warnings.simplefilter("ignore", DeprecationWarning)
        # Its indices are aranges (Hugging Face's padding mask), never negative.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            model,
            _example_batch(),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["wav", "lengths"],
            output_names=["embedding"],
            dynamic_axes={
                "wav": {0: "batch", 1: "samples"},
                "lengths": {0: "batch"},
                "embedding": {0: "batch"},
            },
        )


def export_torchscript(model: nn.Module, path: Pathlike) -> None:
    """Trace ``model`` with ``torch.jit``, for libtorch (C++) users; torch.jit is deprecated in
    torch (a FutureWarning on every call, silenced here: the option says so)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(model.eval(), _example_batch(), check_trace=False)
        torch.jit.save(traced, str(path))


def load_torchscript(path: Pathlike) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def quantize_int8(onnx_path: Pathlike, int8_path: Pathlike) -> None:
    """Dynamic int8 quantisation for CPU of the matrix products (weights int8, activations
    quantised on the fly). Convolutions (the CNN front end, ECAPA) stay fp32: onnxruntime's
    ConvInteger made the student twice as slow as fp32 on an AVX-512 VNNI CPU, where the
    products alone keep its speed and halve the file (bench/inference.py)."""
    # onnxruntime's quantiser logs a line per tensor on the root logger, and advises a
    # pre-processing step that fails on this graph (incomplete symbolic shape inference); what
    # the quantisation costs is measured by the parity figure instead.
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(onnx_path),
            str(int8_path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=INT8_OPS,
        )
    finally:
        logging.disable(previous)


def parity(
    reference: Embedder, candidate: Embedder, utterances: Sequence[np.ndarray]
) -> Dict[str, float]:
    """How close ``candidate``'s embeddings are to ``reference``'s, on every utterance alone
    and on all of them in one zero-padded batch.

    :return: ``min_cosine`` (the worst row) and ``max_abs_diff`` (the largest element).
    """
    cosines: List[np.ndarray] = []
    max_diff = 0.0
    for batch in [[u] for u in utterances] + [list(utterances)]:
        wav, lengths = pad_batch(batch)
        expected, actual = reference(wav, lengths), candidate(wav, lengths)
        cosines.append(
            np.sum(expected * actual, axis=1)
            / (np.linalg.norm(expected, axis=1) * np.linalg.norm(actual, axis=1))
        )
        max_diff = max(max_diff, float(np.abs(expected - actual).max()))
    return {"min_cosine": float(np.concatenate(cosines).min()), "max_abs_diff": max_diff}


def parity_utterances(
    data_dir: Pathlike, num_utterances: int = 4, max_seconds: float = 8.0
) -> Dict[str, np.ndarray]:
    """``num_utterances`` recordings of a Kaldi data dir's wav.scp, evenly spaced over the
    list, each cut to at most ``max_seconds`` (parity needs real audio, not long audio)."""
    wav_scp = read_table(Path(data_dir) / "wav.scp")
    keys = list(wav_scp)
    picks = sorted({round(i) for i in np.linspace(0, len(keys) - 1, num_utterances)})
    max_samples = round(max_seconds * SAMPLE_RATE)
    return {keys[i]: load_audio(wav_scp[keys[i]])[:max_samples] for i in picks}


def export_system(
    final_dir: Pathlike,
    export_dir: Pathlike,
    parity_set: Pathlike,
    num_parity_utterances: int = 4,
    max_parity_seconds: float = 8.0,
    int8: bool = True,
    torchscript: bool = False,
) -> Dict[str, Any]:
    """Stage 6 for one system: write ``export_dir`` (see the module docstring) from
    ``final_dir`` (``exp/<system>/final``), with stage 5's files from ``exp/<system>/scores``
    when they exist.

    :param parity_set: a Kaldi data dir whose utterances the parity check embeds.
    :raises ParityError: an fp32 export disagrees with PyTorch; nothing is written.
    :return: the content of ``meta.json``.
    """
    final_dir, export_dir = Path(final_dir), Path(export_dir)
    reference, cfg, train_meta = load_final(final_dir)
    utterances = parity_utterances(parity_set, num_parity_utterances, max_parity_seconds)
    logging.info(
        "parity set: %s",
        ", ".join(f"{key} ({len(audio) / SAMPLE_RATE:.1f} s)" for key, audio in utterances.items()),
    )
    audio = list(utterances.values())
    torch_embedder = TorchEmbedder(reference)
    # A second copy is folded and exported, so parity compares against the very model stage 4
    # ran (see fold_weight_norm on why not a deep copy).
    exported = fold_weight_norm(load_final(final_dir)[0])
    files = {"onnx": ONNX_NAME}
    figures: Dict[str, Dict[str, float]] = {}

    with atomic_dir(export_dir) as tmp:
        export_onnx(exported, tmp / ONNX_NAME)
        figures["onnx"] = parity(torch_embedder, OnnxEmbedder(tmp / ONNX_NAME), audio)
        if torchscript:
            export_torchscript(exported, tmp / TORCHSCRIPT_NAME)
            files["torchscript"] = TORCHSCRIPT_NAME
            figures["torchscript"] = parity(
                torch_embedder, TorchEmbedder(load_torchscript(tmp / TORCHSCRIPT_NAME)), audio
            )
        for name, figure in figures.items():
            logging.info(
                "parity %s vs PyTorch: min cosine %.7f, max |diff| %.2e",
                name,
                figure["min_cosine"],
                figure["max_abs_diff"],
            )
            if not figure["min_cosine"] > PARITY_MIN_COSINE:
                raise ParityError(
                    f"{export_dir}: the {name} export disagrees with PyTorch on {parity_set} "
                    f"(min cosine {figure['min_cosine']:.6f}, needs > {PARITY_MIN_COSINE})"
                )
        if int8:
            quantize_int8(tmp / ONNX_NAME, tmp / INT8_NAME)
            files["int8"] = INT8_NAME
            figures["int8"] = parity(torch_embedder, OnnxEmbedder(tmp / INT8_NAME), audio)
            logging.info(
                "parity int8 vs PyTorch (reported, not checked): min cosine %.5f, max |diff| %.2e",
                figures["int8"]["min_cosine"],
                figures["int8"]["max_abs_diff"],
            )

        shutil.copy(final_dir / FINAL_CONFIG_NAME, tmp / CONFIG_NAME)
        stage4_kd_crops = kd_crops(cfg.eval.num_crops, cfg.eval.original_crop_branches)
        if stage4_kd_crops:
            logging.warning(
                "eval.original_crop_branches: stage 4 embedded %d crop(s) per "
                "utterance on the KD branch, the export embeds every crop on the "
                "FT branch: its fused score differs from stage 5's",
                stage4_kd_crops,
            )
        meta = {
            "system": final_dir.parent.name,
            "description": cfg.description,
            "teacher": cfg.teacher.path,
            "params": train_meta.get("params"),
            "macs_per_second": train_meta.get("macs_per_second"),
            "exported_from": str(final_dir),
            "final_fingerprint": final_fingerprint(final_dir),
            "files": files,
            "inputs": {
                "wav": "float32 [batch, samples], 16 kHz mono in [-1, 1], zero-padded",
                "lengths": "int64 [batch], valid samples per row",
            },
            "outputs": {"embedding": f"float32 [batch, {reference.embed_dim}]"},
            "embed_dim": reference.embed_dim,
            "sample_rate": SAMPLE_RATE,
            "audio_rule": AUDIO_RULE,
            "opset": OPSET,
            # The shortest input with an embedding; oskdft verify and embed refuse shorter.
            "min_samples": reference.min_samples,
            "kd_crops_in_stage4": stage4_kd_crops,
            "exporter": f"torch.onnx.export, TorchScript-based (torch {torch.__version__})",
            "parity": {
                "set": str(parity_set),
                "utterances": list(utterances),
                "min_cosine_required": PARITY_MIN_COSINE,
                **figures,
            },
            "deploy_backend": _copy_scoring_files(final_dir.parent / SCORES_DIR, tmp),
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _copy_scoring_files(scores_dir: Path, out_dir: Path) -> Optional[str]:
    """Copy stage 5's calibration, metrics and back-end models; return the deployment back end
    (None, with a warning, when stage 5 has not run)."""
    if not (scores_dir / CALIBRATION_NAME).is_file():
        logging.warning(
            "%s: no calibration.json (stage 5 has not run): the export can embed "
            "but not verify; run stage 5, then stage 6 again",
            scores_dir,
        )
        return None
    for path in [
        scores_dir / CALIBRATION_NAME,
        scores_dir / METRICS_NAME,
        *scores_dir.glob("*.npz"),
    ]:
        if path.is_file():
            shutil.copy(path, out_dir / path.name)
    return load_calibration(scores_dir / CALIBRATION_NAME)[0]
