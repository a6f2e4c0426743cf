"""Experiment configuration: typed dataclasses loaded from YAML.

YAML holds what defines an experiment (model, losses, schedules, augmentation, back ends); flags
hold paths and resources. One system = one YAML file in ``egs/<recipe>/conf/``; its stem names the
experiment directory ``exp/<stem>/``. Stage 3 saves the merged configuration, with the recipe's
data section (``conf/data.yaml``) folded in, as ``exp/<stem>/config.yaml``; later stages read only
that file.

Rules:

- an unknown key, in a file or an override, is an error naming the file, the line and the
  known keys; a value of the wrong type, outside its fixed :data:`CHOICES` or out of its range
  (:data:`LIMITS`) is an error too;
- ``base: other.yaml`` (relative to the file) inherits another config, merged key by key;
- overrides are dotted keys, ``optim.backend_lr=5e-5 kd.loss=none``, values parsed as YAML.

>>> cfg = SystemConfig()
>>> cfg.kd.loss, cfg.sv.margin
('mse_last', 0.2)
>>> apply_overrides(cfg, ["sv.margin=0.3"]).sv.margin
0.3
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from oskdft.layout import SAMPLE_RATE
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

# kd.loss of a system without knowledge distillation.
NO_KD = "none"
# ssl.source of a system without an SSL model (ECAPA-TDNN on filter banks).
FBANK = "fbank"
# teacher.mode: stage 2 caches the teacher's hidden states, or the teacher runs in every step.
TEACHER_CACHED, TEACHER_ONLINE = "cached", "online"


@dataclass
class DataConfig:
    """Stages 1-2: training windows and the held-out validation split (``conf/data.yaml``)."""

    sample_rate: int = SAMPLE_RATE
    # Training windows: crops of every training utterance; the paper's epoch draws one per
    # utterance: 2 s crops at whole-second offsets.
    window_seconds: float = 2.0
    window_hop_seconds: float = 1.0
    # Validation: speakers held out of training, with generated trials, for model selection.
    valid_speakers: int = 100
    valid_utts_per_speaker: int = 10
    valid_trials: int = 20000
    # Back-end set (PLDA, mean, AS-norm cohort): at most this many utterances per training speaker.
    backend_utts_per_speaker: int = 20
    seed: int = 1


@dataclass
class TeacherConfig:
    """The frozen SSL model the student distils."""

    # A Hugging Face hub name or a local directory in Hugging Face format. A relative path is
    # resolved against the recipe's working directory (e.g. exp/teacher_ft/final/ssl).
    path: Optional[str] = None
    # cached: stage 2 stores its hidden states once; online: it runs inside every training step.
    mode: str = TEACHER_CACHED
    # How stage 2 stores the hidden states: fp16 (exact float16) or lilcom (lossy, about half
    # the size; needs the lilcom package).
    cache_storage: str = "fp16"


@dataclass
class FbankConfig:
    """Kaldi log Mel filter banks, the front end of ``ssl.source: fbank`` (no SSL model); the
    defaults are WeSpeaker's (examples/voxceleb/v2/conf/ecapa_tdnn.yaml: fbank_args)."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    # Gaussian noise in 16-bit sample units, in training only (evaluation is deterministic).
    dither: float = 1.0


@dataclass
class SSLConfig:
    """The self-supervised encoder that runs on the waveform, or the filter bank instead."""

    # student: a shallow copy of the teacher (OS-KDFT and baselines);
    # teacher: the teacher itself, fine-tuned (the upper bound);
    # scratch: randomly initialised from `arch` (egs/mini's teacher_ft);
    # fbank: no SSL model, ECAPA-TDNN on the filter banks of `fbank` (the classic baseline).
    source: str = "student"
    # Hugging Face config fields for source=scratch; `model_type` is wav2vec2, hubert or wavlm.
    arch: Dict[str, Any] = field(default_factory=dict)
    num_layers: int = 4
    # Teacher layers (0-based) copied into the student; default: the first num_layers.
    init_layers: Optional[List[int]] = None
    # The original code left these randomly initialised; copying them is the default here.
    copy_pos_conv: bool = True
    copy_final_layer_norm: bool = True
    # Channels of a thinner, randomly initialised CNN feature extractor (None keeps the teacher's).
    thin_cnn_dim: Optional[int] = None
    # random, or sliced: the thin CNN starts as the leading block of the teacher's (the models
    # module, make_student); kd.front_end then distils it.
    thin_cnn_init: str = "random"
    # A cheaper positional convolution (smaller kernel, more groups), randomly initialised; the
    # teacher's where None. kd.front_end distils it, and a thin CNN, from the teacher.
    pos_conv_kernel: Optional[int] = None
    pos_conv_groups: Optional[int] = None
    # OS-KDFT adapters, one per layer, parallel to the feed-forward block, on the FT branch only.
    adapters: bool = True
    adapter_dim: int = 64
    adapter_scale: float = 0.1
    # The original's adapter returns `up + h`, doubling the residual on the FT branch.
    doubled_residual: bool = False
    # zero_up: the up-projection starts at zero, so the FT branch starts equal to the KD
    # branch; normal: the original (its model init overwrote the adapter's): both projections
    # N(0, initializer_range of the encoder config), zero bias.
    adapter_init: str = "zero_up"
    # The original also left the SpecAugment embedding random (HF's uniform init).
    copy_mask_embedding: bool = True
    # In training, Hugging Face's SpecAugment of the encoder config (mask_time_prob,
    # mask_time_length, mask_time_min_masks; mask_feature_prob) on the projected features, drawn
    # per row, and its LayerDrop (config.layerdrop), drawn once per layer for the whole batch,
    # both branches together. The original kept both.
    spec_augment: bool = False
    layer_drop: bool = False
    # Run the CNN, feature projection, SpecAugment and positional convolution on the doubled
    # training batch (the original), so the KD and FT halves get their own dropout and
    # SpecAugment masks; false runs them once and duplicates the output (half the front end's
    # cost; both halves share its masks).
    doubled_front_end: bool = False
    # The features of source=fbank.
    fbank: FbankConfig = field(default_factory=FbankConfig)


@dataclass
class BackendConfig:
    """ECAPA-TDNN on top of the SSL encoder."""

    # last: the last layer (the paper); weighted_sum: learnable layer weights.
    input: str = "last"
    # InstanceNorm over time of what the back end reads (the paper). It removes each
    # utterance's mean and scale per channel, which small encoders trained from scratch need.
    instance_norm: bool = True
    channels: int = 512
    embed_dim: int = 192
    # Width before pooling, and the attentive pooling's bottleneck (the paper: 1536 = 3C, 256).
    pooled_channels: int = 1536
    attention_channels: int = 256
    # The pooling's global context uses the unbiased (n - 1) standard deviation over frames, as
    # the original's torch.var did; false: the biased one, consistent with the attentive one.
    unbiased_context_std: bool = False


@dataclass
class KDConfig:
    """Knowledge distillation from the teacher."""

    # none | mse_last (the paper) | distilhubert (prediction heads for target_layers)
    loss: str = "mse_last"
    # Multiplies the KD loss: the paper's 100 for mse_last; DistilHuBERT used 1.
    scale: float = 100.0
    # linear_decay: w = (decay_epochs - epoch) / decay_epochs, epochs counted from 1 as in the
    # original (0.99 in the first epoch, 0 from epoch decay_epochs on); constant: 1.
    schedule: str = "linear_decay"
    decay_epochs: int = 100
    # KD stops after this many epochs (two-step baselines); None: it never stops.
    until_epoch: Optional[int] = None
    # Teacher layers (1-based hidden states) that distilhubert heads predict.
    target_layers: List[int] = field(default_factory=lambda: [4, 8, 12])
    # Front-end KD: the student's KD-branch transformer input (hidden state 0: CNN, feature
    # projection, positional convolution) against the teacher's, mse or l1_cosine
    # (DistilHuBERT's per-frame term), times front_end_scale, added to the KD loss (and
    # weighted by its schedule). It teaches a thin CNN and a cheaper positional convolution.
    front_end: str = NO_KD
    front_end_scale: float = 1.0
    # A front-end distillation phase before epoch 1: this many steps (0: none) in which only
    # the CNN, feature projection and positional convolution train, on the kd.front_end
    # distance to the teacher's hidden state 0 (no transformer layer runs), with Adam at
    # front_end_lr (cosine to 0). It teaches a thin CNN what the copied layers expect.
    front_end_steps: int = 0
    front_end_lr: float = 1.0e-3


@dataclass
class SVConfig:
    """Speaker-verification fine-tuning loss: AAM-softmax."""

    margin: float = 0.2
    scale: float = 30.0
    # inverse_frequency: cross-entropy weights 1/count per speaker (the original); none.
    class_weights: str = "inverse_frequency"
    # The SV loss starts at this epoch (two-step baselines set it to kd.until_epoch).
    from_epoch: int = 0


@dataclass
class AugmentConfig:
    """Online augmentation of the student's input; the teacher always sees the clean window."""

    prob: float = 0.6
    # Relative weights of the choices made when augmenting.
    choices: Dict[str, float] = field(
        default_factory=lambda: {
            "none": 1.0,
            "rir": 1.0,
            "babble": 1.0,
            "music": 1.0,
            "noise": 1.0,
            "speech_music": 1.0,
        }
    )
    babble_speakers: List[int] = field(default_factory=lambda: [3, 8])
    babble_snr: List[float] = field(default_factory=lambda: [13.0, 20.0])
    music_snr: List[float] = field(default_factory=lambda: [5.0, 25.0])
    noise_snr: List[float] = field(default_factory=lambda: [0.0, 15.0])
    # Added to both mean powers inside the SNR's logarithms; the original's 1e-4 lowers the
    # level of a noise whose power is near it (0: the SNR as drawn).
    snr_epsilon: float = 0.0
    # Reverberation: lhotse (Kaldi's, delay-compensated, output at the input's power) or
    # original (full convolution with the unit-energy RIR, truncated to the window).
    rir_mode: str = "lhotse"
    clip_prob: float = 0.3
    # Hard clipping at this fraction (drawn from the range) of the window's minimum and
    # maximum sample, the original's rule.
    clip_level: List[float] = field(default_factory=lambda: [0.5, 0.9])
    gain_prob: float = 0.3
    # Gain envelope (the original's "easing"): the gain glides along a random easing curve
    # between 1 and a floor drawn from this range, rising or falling over the window.
    gain_floor: List[float] = field(default_factory=lambda: [0.1, 0.3])
    # The easing curves drawn from, uniformly; the original also has "bounce", whose formula
    # jumps and ends at about 2 (a gain of up to 1.8).
    gain_curves: List[str] = field(
        default_factory=lambda: ["sine", "quad", "cubic", "circ", "expo"]
    )


@dataclass
class OptimConfig:
    """Adam with the paper's three learning-rate groups."""

    epochs: int = 100
    # Global batch (summed over ranks); the OS-KDFT student sees twice as many rows.
    batch_size: int = 128
    # ECAPA + AAM head: cosine from backend_lr down to backend_lr_min. backend_schedule:
    # cosine reaches backend_lr_min in the last epoch (cos(pi (e - 1) / (E - 1))); restarts is
    # the original's CosineAnnealingWarmRestarts with T_0 = epochs, stepped once per epoch
    # (cos(pi (e - 1) / E): it never reaches the minimum).
    backend_lr: float = 1e-4
    backend_lr_min: float = 1e-6
    backend_schedule: str = "cosine"
    # Adapters: this multiple of the back-end rate.
    adapter_lr_mult: float = 10.0
    # Shared SSL weights: a linear warm-up over ssl_warmup_epochs, then x ssl_decay per epoch.
    # ssl_schedule constant: the warm-up climbs to ssl_lr; backend: the original's, the back
    # end's current rate x e / (ssl_warmup_epochs + 1), ssl_lr unused (oskdft.training.schedules).
    ssl_schedule: str = "constant"
    ssl_lr: float = 5e-5
    ssl_warmup_epochs: int = 9
    ssl_decay: float = 0.93
    weight_decay: float = 0.0
    # The original rebuilt Adam every epoch, resetting its moments; true reproduces that.
    reset_each_epoch: bool = False
    # Gradient-norm clipping; None disables it.
    grad_clip: Optional[float] = None
    # Mixed precision on GPU: none | bf16 | fp16 (CPU always trains in fp32).
    amp: str = "bf16"


@dataclass
class TrainConfig:
    """Loop, checkpointing and logging."""

    seed: int = 1
    num_workers: int = 4
    log_every: int = 50
    keep_last: int = 3
    # Average the weights of the last N epoch checkpoints into final/ (0: take the best epoch).
    average_last: int = 0
    tensorboard: bool = False
    # Cap on steps per epoch (None: one window of every training utterance).
    max_steps_per_epoch: Optional[int] = None
    # Also write checkpoints/latest.pt every this many steps, for resuming mid-epoch (0: only
    # the epoch checkpoints).
    checkpoint_every: int = 1000
    # CPU threads of each training process (None: torch's default). Tiny models train fastest
    # on one thread, with the loader workers on the other cores.
    num_threads: Optional[int] = None
    progress_bar: bool = True


@dataclass
class EvalConfig:
    """Stages 4-5: embedding extraction and scoring."""

    # The paper's second view of each utterance: num_crops crops of crop_seconds at
    # linspace(0, len - crop_seconds, num_crops).
    crop_seconds: float = 3.0
    num_crops: int = 5
    # The original embedded an utterance's crops as one batch with its training flag on, so
    # the first num_crops // 2 crops took the KD branch (no adapters) and the rest the FT
    # branch; true reproduces that in stage 4 and in validation. False: every crop on the FT
    # branch (the inference path).
    original_crop_branches: bool = False
    # Model selection score on the validation trials: cosine of full-utterance embeddings, or
    # fused (the paper's score, the original's selection: full utterance and crops).
    valid_score: str = "cosine"
    # cosine | cosine_mean (train mean removed) | plda | asnorm | fused (the paper's score)
    backends: List[str] = field(
        default_factory=lambda: ["cosine", "cosine_mean", "plda", "asnorm", "fused"]
    )
    lda_dim: Optional[int] = 150
    plda_iters: int = 10
    asnorm_top_n: int = 300
    batch_seconds: float = 200.0
    # Calibration (fitted on the validation trials) also uses the two utterances' durations,
    # read from data/<set>/utt2dur.
    calibration_durations: bool = False
    # The back end whose calibration deployment uses; None: the best EER on the validation trials.
    deploy_backend: Optional[str] = None


@dataclass
class SystemConfig:
    """One trained system: a row of the results table."""

    description: str = ""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    sv: SVConfig = field(default_factory=SVConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Folded in from the recipe's conf/data.yaml when stage 3 saves exp/<system>/config.yaml.
    data: DataConfig = field(default_factory=DataConfig)

    def needs_teacher(self) -> bool:
        """Whether ``teacher.path`` must be set: the student is a copy of the teacher, the
        teacher itself is fine-tuned, or the system distils it."""
        return self.ssl.source in ("student", "teacher") or self.kd.loss != NO_KD

    def check_teacher(self, where: Pathlike) -> None:
        """:raises InputError: naming ``where`` (the config file) when the system needs a
        teacher and names none, or distils one into filter banks."""
        if self.ssl.source == FBANK and self.kd.loss != NO_KD:
            raise InputError(
                where,
                f"ssl.source={FBANK} has no hidden states to distil kd.loss={self.kd.loss} into",
                hint="set kd.loss: none",
            )
        if self.needs_teacher() and not self.teacher.path:
            raise InputError(
                where,
                f"ssl.source={self.ssl.source} and kd.loss={self.kd.loss} need a "
                "teacher, and teacher.path is not set",
                hint="set teacher.path (a Hugging Face directory or hub name), or ssl.source: "
                "scratch and kd.loss: none",
            )

    def caches_teacher(self) -> bool:
        """Whether stage 2 caches this system's teacher: KD on, teacher in cached mode."""
        return self.kd.loss != NO_KD and self.teacher.mode == TEACHER_CACHED

    def runs_teacher_online(self) -> bool:
        """Whether the teacher runs in every training step: KD on, teacher in online mode."""
        return self.kd.loss != NO_KD and self.teacher.mode == TEACHER_ONLINE

    def teacher_system(self, exp_dir: Pathlike = "exp") -> Optional[str]:
        """The system whose trained model is the teacher (``teacher.path`` under
        ``exp_dir/<system>/``), or None for a hub name or a model from elsewhere."""
        if self.teacher.path is None:
            return None
        try:
            parts = Path(self.teacher.path).resolve().relative_to(Path(exp_dir).resolve()).parts
        except ValueError:
            return None
        return parts[0] if parts else None


# ---------------------------------------------------------------------------------------------
# Loading, merging, validation

# Each dataclass's fields whose value is one of a fixed set of names, refused otherwise at load
# (file and line named, the names listed). A list is checked item by item (eval.backends), a
# mapping key by key (augment.choices); ``field.key`` names one key inside a mapping field
# (ssl.arch.model_type). The consumers' registries are built from these tuples
# (``Registry(kind, names=...)`` refuses to register any other name), so each name is written
# here once; a new option with fixed values gets its tuple here.
SCORING_BACKENDS = ("cosine", "cosine_mean", "plda", "asnorm", "fused")
CHOICES: Dict[type, Dict[str, tuple]] = {
    TeacherConfig: {"mode": (TEACHER_CACHED, TEACHER_ONLINE), "cache_storage": ("fp16", "lilcom")},
    SSLConfig: {
        "source": ("student", "teacher", "scratch", FBANK),
        "arch.model_type": ("wav2vec2", "hubert", "wavlm"),
        "adapter_init": ("zero_up", "normal"),
        "thin_cnn_init": ("random", "sliced"),
    },
    BackendConfig: {"input": ("last", "weighted_sum")},
    KDConfig: {
        "loss": (NO_KD, "mse_last", "distilhubert"),
        "schedule": ("linear_decay", "constant"),
        "front_end": (NO_KD, "mse", "l1_cosine"),
    },
    SVConfig: {"class_weights": ("inverse_frequency", "none")},
    AugmentConfig: {
        "choices": ("none", "rir", "babble", "music", "noise", "speech_music"),
        "rir_mode": ("lhotse", "original"),
        "gain_curves": ("sine", "quad", "cubic", "circ", "expo", "bounce"),
    },
    OptimConfig: {
        "amp": ("none", "bf16", "fp16"),
        "backend_schedule": ("cosine", "restarts"),
        "ssl_schedule": ("constant", "backend"),
    },
    EvalConfig: {
        "backends": SCORING_BACKENDS,
        "deploy_backend": SCORING_BACKENDS,
        "valid_score": ("cosine", "fused"),
    },
}


def _at_least(low):
    return lambda value: None if value >= low else f"must be at least {low}"


def _positive(value):
    return None if value > 0 else "must be positive"


def _probability(value):
    return None if 0.0 <= value <= 1.0 else "must be a probability in [0, 1]"


def _interval(low=None, high=None):
    """A ``[low, high]`` pair within the given bounds."""

    def check(pair):
        if len(pair) != 2 or pair[0] > pair[1]:
            return "must be [low, high]"
        if low is not None and pair[0] < low:
            return f"must start at {low} or above"
        if high is not None and pair[1] > high:
            return f"must end at {high} or below"
        return None

    return check


def _weights(choices):
    bad = [
        w
        for w in choices.values()
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0
    ]
    return "weights must be numbers >= 0" if bad else None


# Each dataclass's fields with a valid range, checked at load (file and line named), so a bad
# value stops the run before any stage works on it. None (where allowed) is never checked.
LIMITS = {
    DataConfig: {
        "sample_rate": lambda v: (
            None if v == SAMPLE_RATE else f"must be {SAMPLE_RATE}: stage 0 converts all audio to it"
        ),
        "window_seconds": _positive,
        "window_hop_seconds": _positive,
        "valid_speakers": _at_least(0),
        "valid_utts_per_speaker": _at_least(1),
        "valid_trials": _at_least(0),
        "backend_utts_per_speaker": _at_least(1),
    },
    FbankConfig: {
        "num_mel_bins": _at_least(4),
        "frame_length_ms": _positive,
        "frame_shift_ms": _positive,
        "dither": _at_least(0),
    },
    SSLConfig: {
        "num_layers": _at_least(1),
        "thin_cnn_dim": _at_least(1),
        "adapter_dim": _at_least(1),
        "pos_conv_kernel": _at_least(1),
        "pos_conv_groups": _at_least(1),
        "init_layers": lambda layers: (
            None if all(i >= 0 for i in layers) else "must be 0-based layer indices"
        ),
    },
    BackendConfig: {
        name: _at_least(1)
        for name in ("channels", "embed_dim", "pooled_channels", "attention_channels")
    },
    KDConfig: {
        "scale": _at_least(0),
        "decay_epochs": _at_least(1),
        "until_epoch": _at_least(0),
        "front_end_scale": _at_least(0),
        "front_end_steps": _at_least(0),
        "front_end_lr": _positive,
    },
    SVConfig: {"margin": _at_least(0), "scale": _positive, "from_epoch": _at_least(0)},
    AugmentConfig: {
        "prob": _probability,
        "clip_prob": _probability,
        "gain_prob": _probability,
        "choices": _weights,
        "babble_speakers": _interval(low=1),
        "babble_snr": _interval(),
        "music_snr": _interval(),
        "noise_snr": _interval(),
        "clip_level": _interval(low=0, high=1),
        "gain_floor": _interval(low=0, high=1),
        "snr_epsilon": _at_least(0),
        "gain_curves": lambda curves: None if curves else "must name at least one curve",
    },
    OptimConfig: {
        "epochs": _at_least(1),
        "batch_size": _at_least(1),
        "backend_lr": _at_least(0),
        "backend_lr_min": _at_least(0),
        "adapter_lr_mult": _at_least(0),
        "ssl_lr": _at_least(0),
        "ssl_warmup_epochs": _at_least(0),
        "ssl_decay": _positive,
        "weight_decay": _at_least(0),
        "grad_clip": _positive,
    },
    TrainConfig: {
        "num_workers": _at_least(0),
        "log_every": _at_least(1),
        "keep_last": _at_least(0),
        "average_last": _at_least(0),
        "max_steps_per_epoch": _at_least(1),
        "checkpoint_every": _at_least(0),
        "num_threads": _at_least(1),
    },
    EvalConfig: {
        "crop_seconds": _positive,
        "num_crops": _at_least(1),
        "lda_dim": _at_least(1),
        "plda_iters": _at_least(1),
        "asnorm_top_n": _at_least(1),
        "batch_seconds": _positive,
    },
}


def load_config(path: Pathlike, overrides: Sequence[str] = (), cls: type = SystemConfig):
    """Load ``path`` (following ``base:``), apply dotted ``overrides``, validate into ``cls``."""
    raw, lines = _load_with_bases(Path(path))
    cfg = _build(cls, raw, Path(path), lines, prefix="")
    return apply_overrides(cfg, overrides)


def load_data_config(path: Pathlike) -> DataConfig:
    return load_config(path, cls=DataConfig)


def apply_overrides(cfg, overrides: Sequence[str]):
    """Return a copy of ``cfg`` with ``a.b=value`` overrides applied (values parsed as YAML)."""
    if not overrides:
        return cfg
    tree = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise InputError("--override", f"{item!r} is not of the form key.sub=value")
        dotted, text = item.split("=", 1)
        node = tree
        keys = dotted.split(".")
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise InputError("--override", f"unknown key {dotted!r}", hint=_known(node))
            node = node[key]
        if keys[-1] not in node:
            raise InputError("--override", f"unknown key {dotted!r}", hint=_known(node))
        node[keys[-1]] = yaml.safe_load(text)
    return _build(type(cfg), tree, Path("--override"), {}, prefix="")


def to_dict(cfg) -> Dict[str, Any]:
    return copy.deepcopy(dataclasses.asdict(cfg))


def save_config(cfg, path: Pathlike) -> None:
    """Write ``cfg`` as YAML, atomically; ``load_config`` reads it back to an equal object."""
    with atomic_write(path) as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, default_flow_style=None)


def _load_with_bases(path: Path, seen: Optional[Dict[Path, Path]] = None):
    """The merged raw tree and key lines of ``path`` and its ``base:`` chain; ``seen`` collects
    the files read (resolved path -> path as named), in order."""
    seen = {} if seen is None else seen
    if path.resolve() in seen:
        raise InputError(path, "`base:` chain loops back to this file")
    seen[path.resolve()] = path
    if not path.is_file():
        raise InputError(path, "config file not found")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
        key_lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, f"not valid YAML: {e}", line=mark.line + 1 if mark else None) from e
    if not isinstance(raw, dict):
        raise InputError(path, "a config must be a mapping of sections")
    lines = {key: (path, line) for key, line in key_lines.items()}
    base = raw.pop("base", None)
    if base is None:
        return raw, lines
    base_raw, base_lines = _load_with_bases(path.parent / base, seen)
    base_lines.update(lines)
    return _deep_merge(base_raw, raw), base_lines


def _key_lines(node, prefix: str = "") -> Dict[str, int]:
    """Map dotted key -> 1-based line number, from a composed YAML node tree."""
    out: Dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            dotted = f"{prefix}{key_node.value}"
            out[dotted] = key_node.start_mark.line + 1
            out.update(_key_lines(value_node, dotted + "."))
    return out


def _deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "choices":
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _known(node: Dict[str, Any]) -> str:
    return "known keys: " + ", ".join(sorted(node))


def _build(cls, raw: Dict[str, Any], path: Path, lines: Dict, prefix: str):
    """Construct dataclass ``cls`` from ``raw``, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        where, line = lines.get(prefix.rstrip("."), (path, None))
        raise InputError(where, f"section {prefix.rstrip('.')!r} must be a mapping", line=line)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        where, line = lines.get(dotted, (path, None))
        if key not in fields:
            raise InputError(
                where, f"unknown config key {dotted!r}", line=line, hint=_known(fields)
            )
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value or {}, path, lines, prefix=dotted + ".")
        else:
            values[key] = _check_type(value, hint, where, line, dotted)
            _check_choices(cls, key, values[key], path, lines, dotted)
            limit = LIMITS.get(cls, {}).get(key)
            problem = limit(values[key]) if limit and values[key] is not None else None
            if problem:
                raise InputError(where, f"{dotted} {problem}, got {value!r}", line=line)
    return cls(**values)


def _check_choices(cls, key: str, value, path: Path, lines: Dict, dotted: str) -> None:
    """Refuse a value of field ``key`` of ``cls`` outside its :data:`CHOICES`."""
    for name, allowed in CHOICES.get(cls, {}).items():
        field_name, _, inner = name.partition(".")
        if field_name != key or value is None:
            continue
        if inner:  # one key of a mapping field
            what, names = f"{dotted}.{inner}", [value[inner]] if inner in value else []
        elif isinstance(value, dict):
            what, names = f"{dotted} keys", list(value)
        else:
            what, names = dotted, value if isinstance(value, list) else [value]
        for item in names:
            if item not in allowed:
                # The line of the mapping key or inner key, else the field's.
                where, line = lines.get(
                    f"{dotted}.{inner or item}", lines.get(dotted, (path, None))
                )
                raise InputError(
                    where, f"{what} must be one of {', '.join(allowed)}, got {item!r}", line=line
                )


def _check_type(value, hint, where, line, dotted):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _check_type(value, args[0], where, line, dotted)
    ok = True
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin in (list, List):
        ok = isinstance(value, list)
        if ok:
            value = [_check_type(v, args[0], where, line, dotted) for v in value]
    elif origin in (dict, Dict):
        ok = isinstance(value, dict)
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise InputError(where, f"{dotted} must be {name}, got {value!r}", line=line)
    return value


def config_digest(cfg) -> str:
    """sha256 of ``cfg`` as loaded: equal for configs that define the same system, whatever
    their comments, key order or ``base:`` layout (run.sh's done markers hash it).

    >>> default = config_digest(SystemConfig())
    >>> default == config_digest(apply_overrides(SystemConfig(), ["sv.margin=0.2"]))
    True
    >>> default == config_digest(apply_overrides(SystemConfig(), ["sv.margin=0.3"]))
    False
    """
    text = yaml.safe_dump(to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
