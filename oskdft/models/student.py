"""The OS-KDFT student: a shallow copy of the teacher whose layers carry adapter branches.

:func:`make_student` builds the student encoder (a plain Hugging Face model, saved as such) from
the teacher's weights. :class:`BranchedSSL` runs any wav2vec 2.0 / HuBERT / WavLM encoder with
its own layer loop, which calls the Hugging Face submodules (attention, layer norms, feed-forward,
WavLM's relative position bias) and adds the adapter path:

- KD branch (no adapter):  ``out = h + FFN(h')``
- FT branch (adapter):     ``out = h + FFN(h') + A(h)``,  ``A(h) = 0.1 * up(relu(down(LN(h))))``
- FT branch, ``doubled_residual`` (the original code's adapter returned ``up + h``):
  ``out = 2 h + FFN(h') + A(h)``

where ``h`` is the post-attention residual and ``h'`` the feed-forward input (``LN2(h)`` in
pre-LN layers; in post-LN layers ``h`` is already normalised and the layer ends with its final
LayerNorm of ``out``). Training runs both branches in one pass over a batch stacked twice (KD
rows first); inference runs the FT branch alone, or (``num_kd_rows``) the KD branch on the
first rows, as the original evaluated its crops.

Training options (``ssl.*``), each off by default and on in the original code:

- ``spec_augment``: Hugging Face's SpecAugment of the projected features, drawn per row;
- ``layer_drop``: Hugging Face's LayerDrop, one draw per layer for the whole stacked batch, so
  a dropped layer is skipped by both branches at once;
- ``doubled_front_end``: the CNN, feature projection, SpecAugment and positional convolution run
  on the stacked batch, so the two halves get their own dropout and SpecAugment masks. Off,
  they run once and their output is duplicated (both halves are the same audio): half the
  front end's cost, one mask for both halves.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from oskdft.models.teacher import (
    SUPPORTED_MODEL_TYPES,
    SSLEncoder,
    build_ssl_from_arch,
    frame_mask,
    min_samples,
    sample_mask,
    uses_attention_mask,
)
from oskdft.utils.registry import Registry


class Adapter(nn.Module):
    """``scale * up(relu(down(LayerNorm(h))))``.

    :param init: ``zero_up``: ``up`` starts at zero, so a new adapter adds nothing (the FT
        branch then starts equal to the KD branch unless ``doubled_residual``); ``normal``: the
        original's, both projections ``N(0, std)`` with zero bias.
    """

    def __init__(
        self,
        dim: int,
        bottleneck: int = 64,
        scale: float = 0.1,
        init: str = "zero_up",
        std: float = 0.02,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        if init == "normal":
            for linear in (self.down, self.up):
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
        else:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.scale * self.up(F.relu(self.down(self.norm(hidden))))


# ---------------------------------------------------------------------------------------------
# What differs between the Hugging Face families, behind one interface (registered by
# ``model_type``): the feature projection's return value, the attention-mask format and the
# attention call (WavLM threads a relative position bias from layer 0 through all layers).

SSL_FAMILIES: Registry = Registry("SSL model family", names=SUPPORTED_MODEL_TYPES)


@SSL_FAMILIES.register("wav2vec2")
class Wav2Vec2Family:
    def project(self, model: SSLEncoder, features: Tensor) -> Tensor:
        hidden, _ = model.feature_projection(features)
        return hidden

    def attention_mask(self, model: SSLEncoder, hidden: Tensor, mask: Tensor):
        return create_bidirectional_mask(
            config=model.config, inputs_embeds=hidden, attention_mask=mask
        )

    def attend(
        self, attention: nn.Module, hidden: Tensor, attention_mask, position_bias: Optional[Tensor]
    ) -> Tuple[Tensor, Optional[Tensor]]:
        out, _ = attention(hidden, attention_mask=attention_mask)
        return out, position_bias


@SSL_FAMILIES.register("hubert")
class HubertFamily(Wav2Vec2Family):
    def project(self, model: SSLEncoder, features: Tensor) -> Tensor:
        return model.feature_projection(features)


@SSL_FAMILIES.register("wavlm")
class WavLMFamily(Wav2Vec2Family):
    def attention_mask(self, model: SSLEncoder, hidden: Tensor, mask: Tensor):
        return mask  # WavLM's attention takes the [B, frames] padding mask itself

    def attend(self, attention, hidden, attention_mask, position_bias):
        out, _, position_bias = attention(
            hidden, attention_mask=attention_mask, position_bias=position_bias
        )
        return out, position_bias


@dataclass
class SSLOutput:
    """What :class:`BranchedSSL` returns.

    :param hidden_states: the FT branch's (inference path's) hidden states, HF convention.
    :param kd_hidden_states: the KD branch's, when asked for (the same tuple as
        ``hidden_states`` for a model without adapters); otherwise None.
    :param frame_mask: ``[B, frames]`` valid frames, None for an unpadded batch.
    """

    hidden_states: Tuple[Tensor, ...]
    kd_hidden_states: Optional[Tuple[Tensor, ...]]
    frame_mask: Optional[Tensor]


class BranchedSSL(nn.Module):
    """A Hugging Face SSL encoder with optional OS-KDFT adapters (see the module docstring).

    ``model`` is owned, not copied. Without ``spec_augment`` its SpecAugment embedding is
    removed (and the masking switched off in its config), since DDP wants every parameter to
    get a gradient. ``model`` holds no adapter weights, so it can be saved with
    ``save_pretrained`` as it is. The other options are ``ssl.*`` of the same name
    (:class:`oskdft.config.SSLConfig`).
    """

    def __init__(
        self,
        model: SSLEncoder,
        adapters: bool = True,
        adapter_dim: int = 64,
        adapter_scale: float = 0.1,
        doubled_residual: bool = False,
        adapter_init: str = "zero_up",
        spec_augment: bool = False,
        layer_drop: bool = False,
        doubled_front_end: bool = False,
    ):
        super().__init__()
        config = model.config
        self.family = SSL_FAMILIES.get(config.model_type)()
        if not spec_augment:
            config.mask_time_prob = config.mask_feature_prob = 0.0
            if hasattr(model, "masked_spec_embed"):
                del model.masked_spec_embed
        self.model = model
        self.pre_ln = config.do_stable_layer_norm
        self.doubled_residual = doubled_residual
        self.spec_augment, self.layer_drop = spec_augment, layer_drop
        self.doubled_front_end = doubled_front_end
        self.adapters = (
            nn.ModuleList(
                Adapter(
                    config.hidden_size,
                    adapter_dim,
                    adapter_scale,
                    adapter_init,
                    config.initializer_range,
                )
                for _ in range(config.num_hidden_layers)
            )
            if adapters
            else None
        )

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def min_samples(self) -> int:
        """The shortest input with a frame (the CNN's receptive field)."""
        return min_samples(self.model.config)

    def forward(
        self,
        wav: Tensor,
        lengths: Optional[Tensor] = None,
        kd_branch: bool = False,
        num_kd_rows: int = 0,
    ) -> SSLOutput:
        """Run ``[B, T]`` audio on the FT branch; with ``kd_branch`` also the KD branch (stacked
        batch).

        :param lengths: valid samples per row of a zero-padded batch (see
            :meth:`oskdft.models.teacher.SSLTeacher.forward` for the group-norm CNN exception).
        :param num_kd_rows: without ``kd_branch``: rows ``[:num_kd_rows]`` take the KD branch
            instead, and ``hidden_states`` holds each row's own branch.
        """
        batch = wav.shape[0]
        stacked = kd_branch and self.adapters is not None
        copies = 2 if stacked else 1
        hidden, mask = self._front_end(wav, lengths, copies)
        attention_mask = None
        if mask is not None and uses_attention_mask(self.model.config):
            attention_mask = self.family.attention_mask(self.model, hidden, mask)
        if stacked:
            num_kd_rows = batch
        elif self.adapters is None:
            num_kd_rows = 0
        hidden_states = self._layers(hidden, attention_mask, num_kd_rows)
        mask = None if mask is None else mask[:batch]
        if stacked:
            kd = tuple(h[:batch] for h in hidden_states)
            ft = tuple(h[batch:] for h in hidden_states)
            return SSLOutput(ft, kd, mask)
        return SSLOutput(hidden_states, hidden_states if kd_branch else None, mask)

    def front_end_parameters(self) -> List[nn.Parameter]:
        """What ``kd.front_end_steps`` trains: the CNN, the feature projection and the
        positional convolution (not the encoder LayerNorm, which the copied layers expect)."""
        model = self.model
        modules = (model.feature_extractor, model.feature_projection, model.encoder.pos_conv_embed)
        return [param for module in modules for param in module.parameters()]

    def front_end_state(self, wav: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Hidden state 0 (the transformer input) alone: no transformer layer runs."""
        hidden, _ = self._front_end(wav, lengths, copies=1)
        return hidden

    def _front_end(self, wav: Tensor, lengths: Optional[Tensor], copies: int):
        """CNN, feature projection, SpecAugment, positional convolution: the input of layer 0,
        for the batch stacked ``copies`` times, and its frame mask."""
        model, encoder = self.model, self.model.encoder
        if self.doubled_front_end and copies > 1:
            wav = wav.repeat(copies, 1)
            lengths = None if lengths is None else lengths.repeat(copies)
            copies = 1
        if lengths is not None:
            wav = wav * sample_mask(lengths, wav.shape[1])
        features = model.feature_extractor(wav).transpose(1, 2)
        hidden = self.family.project(model, features)
        mask = None
        if lengths is not None:
            mask = frame_mask(model.config, lengths, hidden.shape[1])
            if uses_attention_mask(model.config):
                hidden = hidden * mask[..., None]  # as HF does: padded frames enter as zeros
        if self.spec_augment:  # HF's own masking; it acts in training mode only
            # HF annotates the mask a LongTensor; it takes any 0/1 tensor, as its callers pass.
            hidden = model._mask_hidden_states(hidden, attention_mask=mask)  # type: ignore[arg-type]
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not self.pre_ln:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        if copies > 1:
            hidden = hidden.repeat(copies, 1, 1)
            mask = None if mask is None else mask.repeat(copies, 1)
        return hidden, mask

    def _layers(self, hidden: Tensor, attention_mask, num_kd_rows: int) -> Tuple[Tensor, ...]:
        hidden_states = [hidden]
        position_bias = None
        for index, layer in enumerate(self.model.encoder.layers):
            # HF's LayerDrop: one draw for the whole batch, so both branches skip the layer.
            if self.layer_drop and self.training and torch.rand(()) < self.model.config.layerdrop:
                hidden_states.append(hidden)
                continue
            hidden, position_bias = self._layer(
                index, layer, hidden, attention_mask, position_bias, num_kd_rows
            )
            hidden_states.append(hidden)
        if self.pre_ln:  # HF convention: the last entry is after the encoder's final LayerNorm
            hidden_states[-1] = self.model.encoder.layer_norm(hidden_states[-1])
        return tuple(hidden_states)

    def _layer(self, index, layer, hidden, attention_mask, position_bias, num_kd_rows):
        """One encoder layer, Hugging Face's maths plus the adapter on rows ``num_kd_rows:``."""
        if self.pre_ln:
            attended, position_bias = self.family.attend(
                layer.attention, layer.layer_norm(hidden), attention_mask, position_bias
            )
            hidden = hidden + layer.dropout(attended)
            out = hidden + layer.feed_forward(layer.final_layer_norm(hidden))
            return self._add_adapter(index, hidden, out, num_kd_rows), position_bias
        attended, position_bias = self.family.attend(
            layer.attention, hidden, attention_mask, position_bias
        )
        hidden = layer.layer_norm(hidden + layer.dropout(attended))
        out = self._add_adapter(index, hidden, hidden + layer.feed_forward(hidden), num_kd_rows)
        return layer.final_layer_norm(out), position_bias

    def _add_adapter(self, index: int, hidden: Tensor, out: Tensor, num_kd_rows: int) -> Tensor:
        """Add adapter ``index`` (reading ``hidden``) to the FT rows of ``out``."""
        if self.adapters is None or num_kd_rows >= out.shape[0]:
            return out
        ft_hidden = hidden[num_kd_rows:]
        ft_out = out[num_kd_rows:] + self.adapters[index](ft_hidden)
        if self.doubled_residual:
            ft_out = ft_out + ft_hidden
        return torch.cat([out[:num_kd_rows], ft_out]) if num_kd_rows else ft_out


# ---------------------------------------------------------------------------------------------
# Building the student encoder from the teacher

_LAYER_KEY = re.compile(r"^encoder\.layers\.(\d+)\.(.*)$")


def make_student(
    teacher: PreTrainedModel,
    num_layers: int,
    init_layers: Optional[Sequence[int]] = None,
    copy_pos_conv: bool = True,
    copy_final_layer_norm: bool = True,
    thin_cnn_dim: Optional[int] = None,
    copy_mask_embedding: bool = True,
    pos_conv_kernel: Optional[int] = None,
    pos_conv_groups: Optional[int] = None,
    thin_cnn_init: str = "random",
) -> SSLEncoder:
    """The teacher's architecture with ``num_layers`` layers, initialised from the teacher.

    Copied (deep copies; the teacher is not needed afterwards): the CNN feature extractor, the
    feature projection, layers ``init_layers`` (default: the first ``num_layers``), and unless
    switched off the positional convolution, the encoder LayerNorm and the SpecAugment
    embedding (the original code left those three randomly initialised; in post-LN models that
    LayerNorm precedes the layers).

    :param thin_cnn_dim: give every CNN layer but the last this many channels, randomly
        initialised, for speed. The last keeps the teacher's width so the feature projection
        and everything after it are copied as usual; the frame rate is unchanged.
    :param thin_cnn_init: ``random``, or ``sliced``: every thin CNN tensor is the leading block
        of the teacher's (its first channels), with the input-channel weights scaled by
        ``teacher channels / thin channels`` so each output keeps its mean; a starting point
        for ``kd.front_end``, exact for a per-channel norm (group-norm CNNs), approximate
        through a LayerNorm over channels.
    :param pos_conv_kernel, pos_conv_groups: a cheaper positional convolution (a smaller
        kernel, more groups), randomly initialised; the teacher's where None. It costs
        ``hidden * hidden / groups * kernel`` multiply-accumulates per frame (XLSR-53's:
        1024 * 64 * 128, two thirds of a transformer layer); ``kd.front_end`` distils it.
    """
    # transformers types base_model as any nn.Module; a teacher's is its PreTrainedModel.
    teacher = cast(PreTrainedModel, teacher.base_model)
    num_teacher_layers = teacher.config.num_hidden_layers
    init_layers = list(range(num_layers)) if init_layers is None else list(init_layers)
    if len(init_layers) != num_layers or not all(0 <= i < num_teacher_layers for i in init_layers):
        raise ValueError(
            f"ssl.init_layers must name {num_layers} teacher layers in 0..{num_teacher_layers - 1}"
            f", got {init_layers}"
        )
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_layers
    if thin_cnn_dim is not None:
        config.conv_dim = [thin_cnn_dim] * (len(config.conv_dim) - 1) + [config.conv_dim[-1]]
    new_pos_conv = _set_pos_conv(config, pos_conv_kernel, pos_conv_groups)
    student = build_ssl_from_arch(config)

    skipped = []
    if thin_cnn_dim is not None and thin_cnn_init == "random":
        skipped.append("feature_extractor.")
    if not copy_pos_conv or new_pos_conv:
        skipped.append("encoder.pos_conv_embed.")
    if not copy_final_layer_norm:
        skipped.append("encoder.layer_norm.")
    if not copy_mask_embedding:
        skipped.append("masked_spec_embed")
    teacher_state = teacher.state_dict()
    copied = {}
    for key in student.state_dict():
        if key.startswith(tuple(skipped)):
            continue
        source = _teacher_key(key, init_layers)
        if thin_cnn_dim is not None and key.startswith("feature_extractor."):
            copied[key] = _leading_block(teacher_state[key], student.state_dict()[key].shape)
            continue
        # WavLM's relative position embedding lives in layer 0 only but serves every layer: it
        # stays with student layer 0 whichever teacher layer that copies.
        copied[key] = teacher_state[source if source in teacher_state else key]
    missing = student.load_state_dict(copied, strict=False).missing_keys
    assert all(key.startswith(tuple(skipped)) for key in missing), missing
    return student


def _leading_block(weight: Tensor, shape: torch.Size) -> Tensor:
    """The ``shape``-sized leading block of a teacher CNN tensor, a conv weight's ``[out, in,
    kernel]`` scaled by the fraction of its inputs dropped."""
    block = weight[tuple(slice(0, n) for n in shape)].clone()
    if block.dim() == 3:
        block *= weight.shape[1] / block.shape[1]
    return block


def _set_pos_conv(config, kernel: Optional[int], groups: Optional[int]) -> bool:
    """Give ``config`` the positional convolution's kernel and groups where set; whether it
    changed."""
    kernel = config.num_conv_pos_embeddings if kernel is None else kernel
    groups = config.num_conv_pos_embedding_groups if groups is None else groups
    if config.hidden_size % groups:
        raise ValueError(
            f"ssl.pos_conv_groups={groups} must divide the teacher's hidden size "
            f"{config.hidden_size}"
        )
    changed = (kernel, groups) != (
        config.num_conv_pos_embeddings,
        config.num_conv_pos_embedding_groups,
    )
    config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups = kernel, groups
    return changed


def _teacher_key(student_key: str, init_layers: List[int]) -> str:
    match = _LAYER_KEY.match(student_key)
    if match is None:
        return student_key
    return f"encoder.layers.{init_layers[int(match.group(1))]}.{match.group(2)}"
