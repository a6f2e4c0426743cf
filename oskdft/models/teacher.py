"""Frozen self-supervised teachers: wav2vec 2.0, HuBERT and WavLM checkpoints in Hugging Face form.

Layer indices everywhere in oskdft follow Hugging Face's ``hidden_states`` tuple: index 0 is the
transformer's input (after the positional convolution), index ``i`` the output of layer ``i``,
and index ``L`` (the last) is ``last_hidden_state``, i.e. after the encoder's final LayerNorm
for pre-LN ("stable layer norm") models. transformers 5.x no longer applies that final norm to
the last tuple entry, so :class:`SSLTeacher` restores the convention.

Loading weights through ``from_pretrained`` is the one file access the models package does.

>>> config = ssl_config_from_arch({"model_type": "wav2vec2"})
>>> num_frames(config, 16000)  # 50 frames per second of 16 kHz audio
49
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union, cast, overload

import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Model,
    WavLMModel,
)
from transformers.models.auto.modeling_auto import MODEL_MAPPING

from oskdft.config import CHOICES, SSLConfig
from oskdft.utils.errors import InputError

SUPPORTED_MODEL_TYPES = CHOICES[SSLConfig]["arch.model_type"]
# The Hugging Face encoder of each of those families.
SSLEncoder = Union[Wav2Vec2Model, HubertModel, WavLMModel]

# The paper's teacher, wav2vec2-large-xlsr-53, as architecture fields (random weights): 24 pre-LN
# layers, 1024 wide, and a CNN with LayerNorm after every convolution.
XLSR53_ARCH: Dict[str, Any] = {
    "model_type": "wav2vec2",
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "conv_bias": True,
}

_LOAD_HINT = (
    "pass a directory written by save_pretrained (config.json plus weights), or a hub name such "
    "as facebook/wav2vec2-base; without network access only hub models already in the Hugging "
    "Face cache load"
)


class SSLTeacher(nn.Module):
    """A frozen SSL encoder that returns its hidden states (see the module docstring).

    It stays in eval mode and without gradients whatever the caller does, so a trainer's
    ``model.train()`` never turns its dropout on.
    """

    def __init__(self, hf_model: PreTrainedModel):
        super().__init__()
        _check_supported(hf_model.config, source=type(hf_model).__name__)
        self.hf_model = hf_model.eval().requires_grad_(False)

    @property
    def num_layers(self) -> int:
        return self.hf_model.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.hf_model.config.hidden_size

    def num_frames(self, num_samples: int) -> int:
        """Frames (50 per second) the CNN makes from ``num_samples`` samples."""
        return int(num_frames(self.hf_model.config, num_samples))

    def train(self, mode: bool = True) -> "SSLTeacher":
        return super().train(False)

    @torch.no_grad()
    def forward(self, wav: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Hidden states ``(L + 1) x [B, frames, D]`` of a ``[B, T]`` waveform batch.

        :param lengths: valid samples per row of a zero-padded batch; they become an attention
            mask for models with a LayerNorm CNN. Group-norm CNN models (the base checkpoints)
            were trained without padding masks, and Hugging Face says not to pass one: there the
            zero padding is seen as audio, so a padded row is only close to the row alone.
        """
        config = self.hf_model.config
        attention_mask = None
        if lengths is not None:
            mask = sample_mask(lengths, wav.shape[1])
            wav = wav * mask
            if uses_attention_mask(config):
                attention_mask = mask
        out = self.hf_model(wav, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[:-1] + (out.last_hidden_state,)

    def hidden_layers(
        self, wav: Tensor, layers: Sequence[int], lengths: Optional[Tensor] = None
    ) -> Dict[int, Tensor]:
        """Only the hidden states ``layers`` (indices into :meth:`forward`'s tuple)."""
        hidden_states = self(wav, lengths)
        return {layer: hidden_states[layer] for layer in layers}


def load_teacher_config(name_or_path: str) -> PretrainedConfig:
    """The Hugging Face config of a teacher checkpoint, without loading its weights."""
    _check_local_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise InputError(
            name_or_path, f"cannot load a model config: {_first_line(e)}", hint=_LOAD_HINT
        ) from e
    _check_supported(config, source=name_or_path)
    return config


def load_teacher(name_or_path: str) -> SSLTeacher:
    """Load a wav2vec 2.0, HuBERT or WavLM checkpoint (hub name or local directory), frozen.

    Pre-training checkpoints (``Wav2Vec2ForPreTraining``, e.g. XLSR-53) load as the bare
    encoder; their quantiser and projection heads are dropped.
    """
    load_teacher_config(name_or_path)
    try:
        model = AutoModel.from_pretrained(name_or_path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise InputError(
            name_or_path, f"cannot load the model weights: {_first_line(e)}", hint=_LOAD_HINT
        ) from e
    return SSLTeacher(model)


def ssl_config_from_arch(arch: Mapping[str, Any]) -> PretrainedConfig:
    """A Hugging Face config from architecture fields; ``model_type`` picks the family.

    Unlisted fields take the family's defaults (the base model's shapes).
    """
    fields = dict(arch)
    model_type = fields.pop("model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"ssl.arch.model_type must be one of {', '.join(SUPPORTED_MODEL_TYPES)}, "
            f"got {model_type!r}"
        )
    return AutoConfig.for_model(model_type, **fields)


def build_ssl_from_arch(arch: Union[Mapping[str, Any], PretrainedConfig]) -> SSLEncoder:
    """A randomly initialised encoder (``Wav2Vec2Model``, ``HubertModel`` or ``WavLMModel``).

    ``arch`` is a dict of config fields with ``model_type`` (``ssl.arch`` in a system YAML, or
    ``config.to_dict()`` of a saved encoder) or a config object. Built inside
    ``with torch.device("meta"):`` it allocates nothing, for counting parameters.
    """
    config = arch if isinstance(arch, PretrainedConfig) else ssl_config_from_arch(arch)
    _check_supported(config, source="ssl.arch")
    # The class is called directly because AutoModel.from_config ignores a meta device context.
    # transformers annotates the mapping's values as tuples; for a model config it is a class.
    model_class = cast(Callable[[PretrainedConfig], SSLEncoder], MODEL_MAPPING[type(config)])
    return model_class(config)


@overload
def num_frames(config: PretrainedConfig, num_samples: int) -> int: ...
@overload
def num_frames(config: PretrainedConfig, num_samples: Tensor) -> Tensor: ...
def num_frames(config: PretrainedConfig, num_samples: Union[int, Tensor]) -> Union[int, Tensor]:
    """Frames the CNN feature extractor makes from ``num_samples`` (an int or a tensor)."""
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


def min_samples(config: PretrainedConfig) -> int:
    """The fewest samples from which the CNN makes one frame: its receptive field (400, 25 ms
    at 16 kHz, for every wav2vec2, HuBERT and WavLM model); shorter input has no frame.

    >>> from transformers import Wav2Vec2Config
    >>> min_samples(Wav2Vec2Config())
    400
    """
    samples = 1
    for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride, strict=True))):
        samples = (samples - 1) * stride + kernel
    return samples


def sample_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B, max_len]`` boolean mask, True on the first ``lengths[b]`` positions of row b.

    >>> sample_mask(torch.tensor([1, 3]), 3).int().tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def frame_mask(config: PretrainedConfig, lengths: Tensor, max_frames: int) -> Tensor:
    """``[B, max_frames]`` mask of the frames made from ``lengths`` valid samples."""
    return sample_mask(num_frames(config, lengths), max_frames)


def uses_attention_mask(config: PretrainedConfig) -> bool:
    """Whether padded batches get an attention mask (LayerNorm CNNs), as Hugging Face's feature
    extractors decide with ``return_attention_mask``."""
    return config.feat_extract_norm == "layer"


def _check_supported(config: PretrainedConfig, source: str) -> None:
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise InputError(
            source,
            f"model_type {config.model_type!r} is not a speech SSL model oskdft supports",
            hint=f"use a {', '.join(SUPPORTED_MODEL_TYPES)} checkpoint",
        )
    # HF's optional adapters change the layer maths that the student re-implements.
    if getattr(config, "add_adapter", False) or getattr(config, "adapter_attn_dim", None):
        raise InputError(
            source,
            "checkpoints with Hugging Face adapter layers are not supported",
            hint="use the plain pre-trained encoder",
        )


def _check_local_path(name_or_path: str) -> None:
    """Fail early, with a clear message, on a local path that is not a model directory."""
    path = Path(os.path.expanduser(name_or_path))
    looks_local = (
        path.exists() or name_or_path.startswith(("/", ".", "~")) or (name_or_path.count("/") > 1)
    )
    if not looks_local:
        return  # a hub name: namespace/name
    if not path.is_dir():
        raise InputError(name_or_path, "no such model directory", hint=_LOAD_HINT)
    if not (path / "config.json").is_file():
        raise InputError(
            name_or_path, "not a Hugging Face model directory (no config.json)", hint=_LOAD_HINT
        )


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
