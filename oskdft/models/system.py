"""The speaker model of one system: a front end on the waveform + ECAPA-TDNN.

``build_model(cfg, teacher)`` makes it from a :class:`~oskdft.config.SystemConfig`; the front
end is ``cfg.ssl.source``:

- ``student``: a shallow copy of the teacher (:func:`oskdft.models.student.make_student`);
- ``teacher``: the teacher itself (a deep copy), fine-tuned (the upper-bound baseline);
- ``scratch``: randomly initialised from ``cfg.ssl.arch`` (egs/mini's tiny teacher);
- ``fbank``: no SSL model: Kaldi log Mel filter banks (:mod:`oskdft.models.fbank`).

The first three are a Hugging Face encoder run by :class:`~oskdft.models.student.BranchedSSL`
(with the OS-KDFT adapters); a front end is any module with its interface: ``forward(wav,
lengths, kd_branch, num_kd_rows)`` returning :class:`~oskdft.models.student.SSLOutput`,
``num_layers``, ``hidden_size``, ``adapters``, ``min_samples``. A trained model is rebuilt
without its teacher from the encoder's saved Hugging Face config:
``build_model(cfg, ssl_config=AutoConfig.from_pretrained("final/ssl"))``, then its state dict;
an fbank system from its config alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union, cast

import torch
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from oskdft.config import CHOICES, BackendConfig, SSLConfig, SystemConfig
from oskdft.models.ecapa import EcapaTdnn, masked_instance_norm
from oskdft.models.fbank import FbankFrontEnd
from oskdft.models.student import BranchedSSL, make_student
from oskdft.models.teacher import SSLEncoder, build_ssl_from_arch
from oskdft.utils.registry import Registry

# The front ends a SpeakerModel can have (see the module docstring).
FrontEnd = Union[BranchedSSL, FbankFrontEnd]

# ---------------------------------------------------------------------------------------------
# What the back end reads from the SSL hidden states (``backend.input``)

BACKEND_INPUTS: Registry = Registry("backend.input", names=CHOICES[BackendConfig]["input"])


def _channels_first(hidden: Tensor, mask: Optional[Tensor], instance_norm: bool) -> Tensor:
    """``[B, T, D]`` -> ``[B, D, T]``, InstanceNorm-ed over time when asked."""
    hidden = hidden.transpose(1, 2)
    return masked_instance_norm(hidden, mask) if instance_norm else hidden


@BACKEND_INPUTS.register("last")
class LastLayer(nn.Module):
    """The last hidden state, after InstanceNorm in the paper."""

    def __init__(self, num_hidden_states: int, instance_norm: bool = True):
        super().__init__()
        self.instance_norm = instance_norm

    def forward(self, hidden_states: Tuple[Tensor, ...], mask: Optional[Tensor]) -> Tensor:
        return _channels_first(hidden_states[-1], mask, self.instance_norm)


@BACKEND_INPUTS.register("weighted_sum")
class WeightedLayerSum(nn.Module):
    """A learnable softmax-weighted sum of all hidden states, each after InstanceNorm (layers of
    pre-LN models differ in scale by orders of magnitude); SUPERB's recipe for teachers."""

    def __init__(self, num_hidden_states: int, instance_norm: bool = True):
        super().__init__()
        self.instance_norm = instance_norm
        self.layer_logits = nn.Parameter(torch.zeros(num_hidden_states))

    def forward(self, hidden_states: Tuple[Tensor, ...], mask: Optional[Tensor]) -> Tensor:
        weights = torch.softmax(self.layer_logits, dim=0)
        return sum(
            w * _channels_first(h, mask, self.instance_norm)
            for w, h in zip(weights, hidden_states, strict=True)
        )


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class TrainOutput:
    """:param embeddings: ``[B, embed_dim]`` from the FT branch.
    :param kd_hidden_states: the KD branch's hidden states (HF convention), None when they
        were not asked for."""

    embeddings: Tensor
    kd_hidden_states: Optional[Tuple[Tensor, ...]]


class SpeakerModel(nn.Module):
    """Waveform ``[B, T]`` -> speaker embedding ``[B, embed_dim]``.

    :param ssl: the front end (see the module docstring), an SSL encoder or a filter bank.
    """

    def __init__(self, ssl: FrontEnd, backend_input: nn.Module, ecapa: EcapaTdnn):
        super().__init__()
        self.ssl = ssl
        self.backend_input = backend_input
        self.ecapa = ecapa

    @property
    def embed_dim(self) -> int:
        return self.ecapa.embed_dim

    @property
    def min_samples(self) -> int:
        """The shortest input with an embedding: the front end's first frame (in a padded
        batch, a shorter row would come out as NaN)."""
        return self.ssl.min_samples

    @property
    def ssl_encoder(self) -> Optional[PreTrainedModel]:
        """The Hugging Face encoder, adapters excluded (``save_pretrained`` it as it is); None
        for a front end without one (fbank)."""
        return self.ssl.model if isinstance(self.ssl, BranchedSSL) else None

    def forward(self, wav: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Inference: the FT branch alone. ``lengths``: valid samples per row of a padded batch."""
        return self.embed_rows(wav, lengths)

    def embed_rows(
        self, wav: Tensor, lengths: Optional[Tensor] = None, num_kd_rows: int = 0
    ) -> Tensor:
        """:meth:`forward` with rows ``[:num_kd_rows]`` on the KD branch instead (the original's
        evaluation of crops, ``eval.original_crop_branches``); not part of the exported graph,
        whose inputs are those of :meth:`forward`."""
        out = self.ssl(wav, lengths, num_kd_rows=num_kd_rows)
        return self._embed(out.hidden_states, out.frame_mask)

    def forward_train(
        self, wav: Tensor, lengths: Optional[Tensor] = None, *, kd: bool
    ) -> TrainOutput:
        """Embeddings of the FT branch and, when ``kd`` is set, the KD branch's hidden states;
        with adapters both come from one pass over the batch stacked twice (KD rows, then FT
        rows). ``kd=False`` skips the KD branch (a system without KD, or after
        ``kd.until_epoch``): the caller passes whether this epoch's KD weight is above 0."""
        out = self.ssl(wav, lengths, kd_branch=kd)
        return TrainOutput(self._embed(out.hidden_states, out.frame_mask), out.kd_hidden_states)

    def param_groups(self) -> Dict[str, List[nn.Parameter]]:
        """The three learning-rate groups: ``backend`` (ECAPA and its input layer weights),
        ``adapters`` (empty without adapters) and ``ssl`` (the shared encoder weights; empty
        for a front end without an encoder)."""
        adapters, encoder = self.ssl.adapters, self.ssl_encoder
        return {
            "backend": [*self.backend_input.parameters(), *self.ecapa.parameters()],
            "adapters": [] if adapters is None else list(adapters.parameters()),
            "ssl": [] if encoder is None else list(encoder.parameters()),
        }

    def _embed(self, hidden_states: Tuple[Tensor, ...], mask: Optional[Tensor]) -> Tensor:
        return self.ecapa(self.backend_input(hidden_states, mask), mask)


# ---------------------------------------------------------------------------------------------
# Building

# ssl.source -> the front end (the teacher is needed by student and teacher only).
SSL_SOURCES: Registry[Callable[[SSLConfig, Optional[PreTrainedModel]], FrontEnd]] = Registry(
    "ssl.source", names=CHOICES[SSLConfig]["source"]
)


@SSL_SOURCES.register("student")
def _student(cfg: SSLConfig, teacher: Optional[PreTrainedModel]) -> BranchedSSL:
    return _branched(
        cfg,
        make_student(
            _required(teacher, "student"),
            num_layers=cfg.num_layers,
            init_layers=cfg.init_layers,
            copy_pos_conv=cfg.copy_pos_conv,
            copy_final_layer_norm=cfg.copy_final_layer_norm,
            thin_cnn_dim=cfg.thin_cnn_dim,
            copy_mask_embedding=cfg.copy_mask_embedding,
            pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups,
            thin_cnn_init=cfg.thin_cnn_init,
        ),
    )


@SSL_SOURCES.register("teacher")
def _teacher(cfg: SSLConfig, teacher: Optional[PreTrainedModel]) -> BranchedSSL:
    # transformers types base_model as any nn.Module; a teacher's is an SSLEncoder.
    encoder = cast(SSLEncoder, _required(teacher, "teacher").base_model)
    return _branched(cfg, copy.deepcopy(encoder).requires_grad_(True))


@SSL_SOURCES.register("scratch")
def _scratch(cfg: SSLConfig, teacher: Optional[PreTrainedModel]) -> BranchedSSL:
    if not cfg.arch:
        raise ValueError("ssl.source=scratch needs ssl.arch (Hugging Face config fields)")
    return _branched(cfg, build_ssl_from_arch(cfg.arch))


@SSL_SOURCES.register("fbank")
def _fbank(cfg: SSLConfig, teacher: Optional[PreTrainedModel]) -> FbankFrontEnd:
    fbank = cfg.fbank
    return FbankFrontEnd(
        num_mel_bins=fbank.num_mel_bins,
        frame_length_ms=fbank.frame_length_ms,
        frame_shift_ms=fbank.frame_shift_ms,
        dither=fbank.dither,
    )


def build_model(
    cfg: SystemConfig,
    teacher: Optional[PreTrainedModel] = None,
    ssl_config: Optional[PretrainedConfig] = None,
) -> SpeakerModel:
    """The untrained model of system ``cfg``.

    :param teacher: e.g. ``load_teacher(...).hf_model``; needed for ``ssl.source`` student and
        teacher, and never modified or kept.
    :param ssl_config: the saved config of a trained system's encoder (``final/ssl``): the
        architecture is rebuilt from it with random weights, for ``load_state_dict``, and no
        teacher is needed.
    """
    front_end: FrontEnd
    if ssl_config is not None:
        front_end = _branched(cfg.ssl, build_ssl_from_arch(ssl_config))
    else:
        front_end = SSL_SOURCES.get(cfg.ssl.source)(cfg.ssl, teacher)
    backend_input = BACKEND_INPUTS.get(cfg.backend.input)(
        front_end.num_layers + 1, instance_norm=cfg.backend.instance_norm
    )
    ecapa = EcapaTdnn(
        front_end.hidden_size,
        channels=cfg.backend.channels,
        embed_dim=cfg.backend.embed_dim,
        pooled_channels=cfg.backend.pooled_channels,
        attention_channels=cfg.backend.attention_channels,
        unbiased_context_std=cfg.backend.unbiased_context_std,
    )
    return SpeakerModel(front_end, backend_input, ecapa)


def _branched(cfg: SSLConfig, encoder: SSLEncoder) -> BranchedSSL:
    """``encoder`` (owned, not copied) with the adapters of ``cfg``."""
    return BranchedSSL(
        encoder,
        adapters=cfg.adapters,
        adapter_dim=cfg.adapter_dim,
        adapter_scale=cfg.adapter_scale,
        doubled_residual=cfg.doubled_residual,
        adapter_init=cfg.adapter_init,
        spec_augment=cfg.spec_augment,
        layer_drop=cfg.layer_drop,
        doubled_front_end=cfg.doubled_front_end,
    )


def _required(teacher: Optional[PreTrainedModel], source: str) -> PreTrainedModel:
    if teacher is None:
        raise ValueError(f"ssl.source={source} needs the teacher model (teacher.path)")
    return teacher
