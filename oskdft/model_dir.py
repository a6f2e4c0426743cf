"""The trained-model directory ``exp/<system>/final/``: what inference needs, and nothing else.

Stage 3 writes it once training ends; stages 4 and 6 read it, and so does a system that
distils this one's encoder (egs/mini distils ``exp/teacher_ft/final/ssl``)::

    final/
      config.yaml   the merged SystemConfig the system was trained with
      model.pt      the SpeakerModel state dict (tensors only: torch.load(weights_only=True))
      ssl/          the SSL encoder in Hugging Face format (save_pretrained), adapters
                    excluded; absent for a system without one (ssl.source: fbank)
      meta.json     what the trainer records (epoch, validation EERs, ...) plus "params":
                    parameter counts per component, and "macs_per_second": {"ssl": ...,
                    "total": ...}, the compute on one second of audio
                    (:mod:`oskdft.models.describe`)

Loading needs no teacher: the encoder is rebuilt from ``ssl/config.json`` (which already holds
the student's depth and thin CNN), the adapters and back end (and a filter bank) from
``config.yaml``, and ``model.pt`` is loaded strictly into that.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch
from torch import nn

from oskdft.config import FBANK, SystemConfig, load_config, save_config
from oskdft.layout import CONFIG_NAME, META_NAME, MODEL_NAME, SSL_DIR
from oskdft.models.describe import count_parameters, macs_per_second
from oskdft.models.system import SpeakerModel, build_model
from oskdft.models.teacher import load_teacher_config
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_dir

_RERUN_HINT = "train the system first: run.sh --stage 3 --stop-stage 3 --systems <system>"


def save_final(
    final_dir: Pathlike, model: SpeakerModel, cfg: SystemConfig, meta: Dict[str, Any]
) -> Path:
    """Write ``final_dir`` (see the module docstring) in a temporary directory renamed into
    place, so an existing final/ is replaced only by a complete one.

    :param meta: JSON-serialisable facts about the run; ``"params"`` and
        ``"macs_per_second"`` are added.
    :return: ``final_dir``.
    """
    final_dir = Path(final_dir)
    # Tensors are saved on the CPU so that a model trained on GPU loads anywhere.
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    meta = {**meta, "params": count_parameters(model), "macs_per_second": macs_per_second(model)}
    with atomic_dir(final_dir) as tmp:
        save_config(cfg, tmp / CONFIG_NAME)
        torch.save(state, tmp / MODEL_NAME)
        if model.ssl_encoder is not None:
            model.ssl_encoder.save_pretrained(tmp / SSL_DIR)
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return final_dir


def load_final(
    final_dir: Pathlike, device: Union[str, torch.device] = "cpu"
) -> Tuple[SpeakerModel, SystemConfig, Dict[str, Any]]:
    """The trained model (in eval mode, on ``device``), its config and its meta.

    :raises InputError: naming the missing or unreadable file, or a ``model.pt`` that does
        not fit the architecture of ``config.yaml`` and ``ssl/config.json``.
    """
    final_dir = _checked(final_dir)
    cfg = load_config(final_dir / CONFIG_NAME)
    meta = _read_meta(final_dir / META_NAME)
    ssl_config = None
    if cfg.ssl.source != FBANK:
        _require(final_dir / SSL_DIR / "config.json")
        ssl_config = load_teacher_config(str(final_dir / SSL_DIR))
    model_path = final_dir / MODEL_NAME
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise InputError(model_path, f"not a readable state dict ({e})", hint=_RERUN_HINT) from e
    # Built on the meta device and given the saved tensors: a random initialisation that
    # would be overwritten costs seconds for a large encoder.
    with torch.device("meta"):
        model = build_model(cfg, ssl_config=ssl_config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise InputError(
            model_path,
            f"does not fit the model that {CONFIG_NAME} and {SSL_DIR}/config.json describe "
            f"({str(e).strip().splitlines()[0]})",
            hint=_RERUN_HINT,
        ) from e
    # Strict loading filled every parameter and persistent buffer; a non-persistent buffer
    # (none today) would still be on the meta device.
    unset = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unset:
        raise RuntimeError(f"tensors not in model.pt stayed uninitialised: {unset[:3]}")
    return model.to(device).eval(), cfg, meta


class TorchEmbedder:
    """A :class:`SpeakerModel` (or its TorchScript trace) behind the numpy interface of
    :class:`~oskdft.inference.onnx_runtime.OnnxEmbedder`: ``(wav, lengths) -> embeddings``."""

    def __init__(self, model: nn.Module, device: Union[str, torch.device] = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)

    def __call__(self, wav: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(
                torch.from_numpy(np.asarray(wav, dtype=np.float32)).to(self.device),
                torch.from_numpy(np.asarray(lengths, dtype=np.int64)).to(self.device),
            )
        return out.float().cpu().numpy()


def final_fingerprint(final_dir: Pathlike) -> str:
    """Changes whenever final/ is rewritten: a hash of ``config.yaml`` and of ``model.pt``'s
    size and modification time (save_final writes fresh files; hashing the weights would cost
    seconds for large models)."""
    final_dir = _checked(final_dir)
    stat = (final_dir / MODEL_NAME).stat()
    digest = hashlib.sha256((final_dir / CONFIG_NAME).read_bytes())
    digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _checked(final_dir: Pathlike) -> Path:
    """``final_dir`` as a Path, once the files every trained-model directory has are there."""
    final_dir = Path(final_dir)
    if not final_dir.is_dir():
        raise InputError(final_dir, "no trained model here", hint=_RERUN_HINT)
    for name in (CONFIG_NAME, MODEL_NAME, META_NAME):
        _require(final_dir / name)
    return final_dir


def _require(path: Path) -> None:
    if not path.is_file():
        raise InputError(path, "missing from the trained-model directory", hint=_RERUN_HINT)


def _read_meta(path: Path) -> Dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON ({e})", hint=_RERUN_HINT) from e
    if not isinstance(meta, dict):
        raise InputError(path, "must hold a JSON object", hint=_RERUN_HINT)
    return meta
