"""Stage 3: train one system (OS-KDFT or a baseline) and write ``exp/<system>/final/``.

What a system is follows from its config alone:

- ``oskdft``: a student copied from the teacher, with adapters; KD (weight decaying over the
  epochs) and AAM-softmax fine-tuning at once, the KD loss on the adapter-free branch;
- ``ft_only``: the same student, ``kd.loss: none``;
- ``kd_then_ft`` / ``distilhubert``: KD alone until ``kd.until_epoch``, then fine-tuning alone
  from ``sv.from_epoch`` (:func:`~oskdft.training.schedules.loss_weights`);
- ``teacher_ft``: the teacher itself (``ssl.source: teacher``, or ``scratch`` from
  ``ssl.arch``), fine-tuned without KD.

The teacher is frozen. Online (``teacher.mode: online``) it runs on the clean window in every
step; cached, its hidden states come with the windows from stage 2's cache.

One process on the CPU, or one per GPU under ``torchrun`` (DDP, SyncBatchNorm, bf16/fp16
autocast); rank 0 alone logs, validates and writes. Adam keeps its moments across epochs
(``optim.reset_each_epoch`` rebuilds it every epoch, as the original code did; a two-step
baseline's fine-tuning, from ``sv.from_epoch``, starts with a fresh one); the learning rates of
the three groups are set at the start of every epoch (:mod:`.schedules`).

After every epoch the model is scored on the held-out validation trials; ``final/`` gets the
best epoch, or the average of the last ``train.average_last`` epochs. The run can be killed at
any time: rerunning continues from the newest checkpoint and ends with the same weights as an
uninterrupted run (:mod:`.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, cast

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from oskdft.cache import open_teacher_cache
from oskdft.config import (
    CHOICES,
    NO_KD,
    SVConfig,
    SystemConfig,
    load_config,
    load_data_config,
    to_dict,
)
from oskdft.data.dataset import OneWindowPerUtteranceSampler, TrainingWindows, collate_windows
from oskdft.data.windows import read_train_speakers, speaker_counts
from oskdft.layout import FINAL_DIR
from oskdft.losses.aam import AAMSoftmax
from oskdft.losses.kd import build_kd_loss
from oskdft.model_dir import save_final
from oskdft.models.student import BranchedSSL
from oskdft.models.system import SpeakerModel, build_model
from oskdft.models.teacher import SSLTeacher, load_teacher, load_teacher_config
from oskdft.training.checkpoint import (
    BEST,
    CHECKPOINT_DIR,
    LATEST,
    Checkpoint,
    average_model_states,
    epoch_checkpoint_name,
    epoch_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_seed,
)
from oskdft.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    check_replicas_agree,
    init_distributed,
    shutdown,
)
from oskdft.training.experiment import prepare_exp_dir
from oskdft.training.loggers import MetricsLogger, Throughput, format_duration, open_metrics
from oskdft.training.objective import (
    FrontEndDistillation,
    TrainingObjective,
    autocast,
    optimizer_step,
)
from oskdft.training.schedules import LossWeights, learning_rates, loss_weights
from oskdft.training.validation import make_validator
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike
from oskdft.utils.logging import setup_logging
from oskdft.utils.registry import Registry

LOG_NAME = "log/train.log"
CHECKPOINT_FORMAT = 1
# Mixed precision on GPU (optim.amp, one key per CHOICES name); the CPU always trains in fp32.
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# sv.class_weights: the per-speaker counts that AAM-softmax weighs its cross-entropy by.
CLASS_COUNTS: Registry = Registry("sv.class_weights", names=CHOICES[SVConfig]["class_weights"])
CLASS_COUNTS.register("inverse_frequency")(lambda data_dir: speaker_counts(data_dir))
CLASS_COUNTS.register("none")(lambda data_dir: None)


def train_system(
    config: Pathlike,
    data_config: Pathlike,
    data_dir: Pathlike,
    exp_dir: Pathlike,
    overrides: Sequence[str] = (),
    device: str = "auto",
    force: bool = False,
    teacher_cache: Pathlike = "exp/teacher_cache",
    input_hashes: Optional[Dict[str, str]] = None,
) -> Path:
    """Stage 3 for system ``config`` (see the module docstring), as run.sh calls it.

    :param data_config: the recipe's data YAML, saved into ``exp_dir/config.yaml``.
    :param device: ``auto`` (this rank's GPU when there is one), ``cuda`` or ``cpu``.
    :param force: start over even when ``exp_dir`` holds a run of another config (it is
        moved aside, not deleted).
    :param teacher_cache: stage 2's cache root, for systems with a cached teacher.
    :param input_hashes: name -> hash of the run's inputs besides the config (run.sh: the
        markers of the training windows and the teacher); a run of other inputs is refused
        like one of another config.
    :return: ``exp_dir/final``.
    """
    ctx = init_distributed(device)
    try:
        cfg = dataclasses.replace(
            load_config(config, overrides), data=load_data_config(data_config)
        )
        cfg.check_teacher(config)
        exp_dir = Path(exp_dir)
        resume_from = prepare_exp_dir(exp_dir, cfg, force, ctx, input_hashes)
        setup_logging(exp_dir / LOG_NAME if ctx.is_main else None, rank=ctx.rank)
        logging.info(
            "training %s on %d process(es), device %s", exp_dir, ctx.world_size, ctx.device
        )
        trainer = Trainer(cfg, data_dir, exp_dir, ctx, teacher_cache)
        if resume_from is not None:
            trainer.load(resume_from)
        trainer.fit()
        if ctx.is_main:
            trainer.write_final()
        barrier(ctx)
        return exp_dir / FINAL_DIR
    finally:
        shutdown(ctx)


class Trainer:
    """The training state of one system and the loop over it (used by :func:`train_system`).

    :param data_dir: the recipe's data directory (stage 1's windows, speakers, validation).
    :param cache_root: stage 2's cache root.
    """

    def __init__(
        self,
        cfg: SystemConfig,
        data_dir: Pathlike,
        exp_dir: Path,
        ctx: DistContext,
        cache_root: Pathlike,
    ):
        self.cfg, self.data_dir, self.exp_dir, self.ctx = cfg, Path(data_dir), exp_dir, ctx
        self.device = ctx.device
        # Progress; all of it goes into checkpoints.
        self.epoch = 0  # the epoch in progress (0-based) = epochs completed
        self.epoch_step = 0  # steps done in it
        self.step = 0  # global
        self.valid_eers: List[Optional[float]] = []  # per completed epoch
        self.best_epoch: Optional[int] = None  # 0-based
        self.train_seconds = 0.0
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.phases = _check_loss_schedule(cfg)
        self.batch_size = _per_rank_batch(cfg.optim.batch_size, ctx.world_size)
        self.amp_dtype = AMP_DTYPES[cfg.optim.amp] if self.device.type == "cuda" else None
        self.teacher_config = load_teacher_config(cfg.teacher.path) if cfg.teacher.path else None
        self._build_model()
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self._build_data(cache_root)
        self.validator = (
            make_validator(self.data_dir, cfg.data.valid_speakers, cfg.eval)
            if ctx.is_main
            else None
        )
        self._log_model()

    # -----------------------------------------------------------------------------------------
    # Building

    def _build_model(self) -> None:
        """The objective (model, KD loss, AAM head) on the device, DDP-wrapped when
        distributed, and the online teacher."""
        cfg, ctx = self.cfg, self.ctx
        teacher = self._load_teacher()
        torch.manual_seed(cfg.train.seed)  # every rank starts from the same weights
        model = build_model(cfg, teacher.hf_model if teacher is not None else None)
        num_speakers = len(read_train_speakers(self.data_dir))
        aam = AAMSoftmax(
            model.embed_dim,
            num_speakers,
            cfg.sv.margin,
            cfg.sv.scale,
            class_counts=CLASS_COUNTS.get(cfg.sv.class_weights)(self.data_dir),
        )
        self.objective = TrainingObjective(model, self._kd_loss(model), aam).to(self.device)
        # The online teacher stays (on the device); otherwise it was only the student's init.
        self.online_teacher = (
            teacher.to(self.device) if teacher is not None and cfg.runs_teacher_online() else None
        )
        if ctx.is_distributed and self.device.type == "cuda":
            self.objective = nn.SyncBatchNorm.convert_sync_batchnorm(self.objective)
        self.trained: nn.Module = self.objective
        if ctx.is_distributed:
            self.trained = DistributedDataParallel(
                self.objective,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                # Epochs without KD or without SV, and layers LayerDrop skips, leave some
                # parameters out of the loss.
                find_unused_parameters=len(self.phases) > 1 or cfg.ssl.layer_drop,
            )

    def _build_data(self, cache_root: Pathlike) -> None:
        """Stage 1's windows (with the cached teacher states, or the clean window for the
        online teacher), this rank's sampler and the loader."""
        cfg = self.cfg
        cache = open_teacher_cache(cfg, cfg.data, self.data_dir, cache_root)
        if cache is not None:
            logging.info(
                "teacher targets: layers %s from the stage-2 cache %s",
                cache.layers,
                cache.cuts_path.parent,
            )
        elif self.online_teacher is not None:
            logging.info("teacher targets: the teacher runs online on the clean windows")
        self.dataset = TrainingWindows.from_data_dir(
            self.data_dir,
            cfg.augment,
            seed=cfg.train.seed,
            cache_cuts=cache.cuts_path if cache else None,
            teacher_layers=cache.layers if cache else None,
            teacher_wav=self.online_teacher is not None,
        )
        self.sampler = OneWindowPerUtteranceSampler(
            self.dataset.windows_per_utterance,
            self.ctx.world_size,
            self.ctx.rank,
            seed=cfg.train.seed,
        )
        self.steps_per_epoch = self.sampler.num_samples // self.batch_size
        if cfg.train.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.train.max_steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise InputError(
                "optim.batch_size",
                f"{cfg.optim.batch_size} is more than the "
                f"{self.dataset.num_utterances} training utterances of one epoch",
                hint="lower optim.batch_size",
            )
        workers = cfg.train.num_workers
        self.loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=workers,
            collate_fn=collate_windows,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    def _load_teacher(self) -> Optional[SSLTeacher]:
        """The teacher's weights, when the student copies them or the teacher runs online."""
        needs_weights = (
            self.cfg.ssl.source in ("student", "teacher") or self.cfg.runs_teacher_online()
        )
        if not needs_weights:
            return None
        assert self.cfg.teacher.path, "the config check requires one for these systems"
        return load_teacher(self.cfg.teacher.path)

    def _kd_loss(self, model: SpeakerModel) -> Optional[nn.Module]:
        if self.cfg.kd.loss == NO_KD:
            return None
        teacher_config = self.teacher_config
        assert teacher_config is not None, "the config check requires a teacher for KD"
        return build_kd_loss(
            self.cfg,
            model.ssl.hidden_size,
            teacher_config.hidden_size,
            teacher_config.num_hidden_layers,
        )

    def _make_optimizer(self) -> torch.optim.Adam:
        rates = learning_rates(self.cfg.optim, self.epoch)
        groups = [
            {"params": params, "name": name, "lr": rates[name]}
            for name, params in self.objective.param_groups().items()
            if params
        ]
        return torch.optim.Adam(groups, weight_decay=self.cfg.optim.weight_decay)

    def _set_learning_rates(self) -> Dict[str, float]:
        rates = learning_rates(self.cfg.optim, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = rates[group["name"]]
        return {group["name"]: group["lr"] for group in self.optimizer.param_groups}

    def _log_model(self) -> None:
        counts = {
            name: sum(p.numel() for p in params)
            for name, params in self.objective.param_groups().items()
        }
        logging.info(
            "system: ssl.source=%s, kd.loss=%s (teacher %s, %s), adapters=%s; "
            "trained parameters: %s",
            self.cfg.ssl.source,
            self.cfg.kd.loss,
            self.cfg.teacher.path,
            self.cfg.teacher.mode,
            self.cfg.ssl.adapters,
            ", ".join(f"{k} {v:,}" for k, v in counts.items()),
        )
        logging.info(
            "%d epochs of %d steps, %d windows per step on each of %d rank(s); "
            "loss phases (kd, sv): %s",
            self.cfg.optim.epochs,
            self.steps_per_epoch,
            self.batch_size,
            self.ctx.world_size,
            sorted(self.phases),
        )

    # -----------------------------------------------------------------------------------------
    # Checkpoints

    def state(self) -> Checkpoint:
        """Everything needed to continue exactly from here."""
        objective = self.objective
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "model": objective.model.state_dict(),
            "aam_head": objective.aam.state_dict(),
            "kd_loss": objective.kd_loss.state_dict() if objective.kd_loss is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_dict(consumed=self.epoch_step * self.batch_size),
            "valid_eers": list(self.valid_eers),
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "world_size": self.ctx.world_size,
        }

    def load(self, path: Path) -> None:
        """Continue from checkpoint ``path``."""
        state = load_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(
                path,
                f"checkpoint format {state.get('format')} is not {CHECKPOINT_FORMAT}",
                hint="start over with --force true",
            )
        if state["world_size"] != self.ctx.world_size:
            raise InputError(
                path,
                f"saved by {state['world_size']} ranks, resumed on "
                f"{self.ctx.world_size}: the batches would differ",
                hint="resume with the same number of processes",
            )
        objective = self.objective
        objective.model.load_state_dict(state["model"])
        objective.aam.load_state_dict(state["aam_head"])
        if objective.kd_loss is not None:
            objective.kd_loss.load_state_dict(state["kd_loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(state["sampler"])
        self.epoch, self.epoch_step, self.step = state["epoch"], state["epoch_step"], state["step"]
        self.valid_eers, self.best_epoch = state["valid_eers"], state["best_epoch"]
        self.train_seconds = state["train_seconds"]
        logging.info(
            "resumed from %s: epoch %d, step %d of the epoch, global step %d",
            path,
            self.epoch + 1,
            self.epoch_step,
            self.step,
        )

    def _checkpoint_dir(self) -> Path:
        return self.exp_dir / CHECKPOINT_DIR

    # -----------------------------------------------------------------------------------------
    # The loop

    def fit(self) -> None:
        """Train from the current state to the last epoch."""
        cfg = self.cfg
        metrics = None
        if self.ctx.is_main:
            metrics = open_metrics(
                self.exp_dir,
                self.exp_dir.name,
                to_dict(cfg),
                cfg.train.tensorboard,
                resume_step=self.step,
            )
        meter = Throughput(
            total_steps=cfg.optim.epochs * self.steps_per_epoch, start_step=self.step
        )
        try:
            # A resumed run has its distilled front end in the checkpoint.
            if cfg.kd.front_end_steps and self.step == 0:
                self._distil_front_end()
            while self.epoch < cfg.optim.epochs:
                started = time.monotonic()
                self._train_epoch(meter, metrics)
                self._end_epoch(metrics, time.monotonic() - started)
        finally:
            if metrics is not None:
                metrics.close()

    def _train_epoch(self, meter: Throughput, metrics: Optional[MetricsLogger]) -> None:
        cfg = self.cfg
        # A two-step baseline's fine-tuning is a second training: it starts with fresh Adam
        # moments (those of the KD step would scale its first updates).
        new_step = self.epoch == cfg.sv.from_epoch
        if self.epoch_step == 0 and self.epoch > 0 and (cfg.optim.reset_each_epoch or new_step):
            self.optimizer = self._make_optimizer()
        rates = self._set_learning_rates()
        weights = loss_weights(cfg, self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.trained.train()
        # loss, kd, sv since the last log line, summed on the device: no sync per step
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        zero = torch.zeros((), device=self.device)
        count = 0
        started = time.monotonic()
        meter.restart(self.step)
        batches = iter(self.loader)
        with tqdm(
            total=self.steps_per_epoch,
            initial=self.epoch_step,
            unit="step",
            desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}",
            mininterval=10,
            disable=not (self.ctx.is_main and cfg.train.progress_bar),
        ) as bar:
            while self.epoch_step < self.steps_per_epoch:
                losses = self._train_step(next(batches), weights)
                self.step += 1
                self.epoch_step += 1
                sums += torch.stack([losses.get(k, zero).double() for k in ("loss", "kd", "sv")])
                count += 1
                bar.update()
                epoch_done = self.epoch_step == self.steps_per_epoch
                if self.step % cfg.train.log_every == 0 or epoch_done:
                    self._log_step(sums / count, count, weights, rates, meter, metrics)
                    sums.zero_()
                    count = 0
                every = cfg.train.checkpoint_every
                if every and self.step % every == 0 and not epoch_done:
                    self._save_latest(time.monotonic() - started)
                    started = time.monotonic()
        self.train_seconds += time.monotonic() - started

    def _distil_front_end(self) -> None:
        """``kd.front_end_steps`` steps of :class:`FrontEndDistillation` over the training
        windows (epochs of the sampler from 0 on), before epoch 1."""
        cfg, steps = self.cfg, self.cfg.kd.front_end_steps
        ssl = cast(BranchedSSL, self.objective.model.ssl)  # KD needs an SSL encoder
        phase = FrontEndDistillation(ssl, cfg.kd, lambda grad: all_reduce_mean(self.ctx, grad))
        logging.info(
            "front-end distillation: %d steps, %s parameters trained",
            steps,
            f"{sum(p.numel() for p in phase.params):,}",
        )
        torch.manual_seed(cfg.train.seed)
        self.trained.train()
        started = time.monotonic()
        losses: List[torch.Tensor] = []
        step, epoch = 0, 0
        while step < steps:
            self.sampler.set_epoch(epoch)
            for batch in itertools.islice(self.loader, min(self.steps_per_epoch, steps - step)):
                teacher = self._teacher_states(batch)[0].float()
                wav = batch["student_wav"].to(self.device, non_blocking=True)
                losses.append(phase.step(step, wav, {0: teacher}))
                step += 1
                if step % cfg.train.log_every == 0 or step == steps:
                    mean = all_reduce_mean(self.ctx, torch.stack(losses).mean()).item()
                    logging.info(
                        "front-end distillation step %d/%d: %s %.4g | lr %.2e",
                        step,
                        steps,
                        cfg.kd.front_end,
                        mean,
                        phase.learning_rate(step - 1),
                    )
                    losses = []
            epoch += 1
        self.sampler.set_epoch(self.epoch)
        seconds = time.monotonic() - started
        self.train_seconds += seconds
        logging.info("front-end distillation done in %s", format_duration(seconds))

    def _train_step(self, batch: Dict[str, Any], weights: LossWeights) -> Dict[str, torch.Tensor]:
        seed = step_seed(self.cfg.train.seed, self.ctx.rank, self.step)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)  # Hugging Face draws its SpecAugment masks with numpy
        return optimizer_step(
            self.trained,
            self.optimizer,
            self.scaler,
            batch["student_wav"].to(self.device, non_blocking=True),
            batch["speaker"].to(self.device, non_blocking=True),
            self._teacher_states(batch) if weights.uses_kd else None,
            weights,
            self.amp_dtype,
            self.cfg.optim.grad_clip,
        )

    def _teacher_states(self, batch: Dict[str, Any]):
        if self.online_teacher is not None:
            with autocast(self.device, self.amp_dtype):
                return self.online_teacher(batch["teacher_wav"].to(self.device, non_blocking=True))
        return {
            layer: states.to(self.device, non_blocking=True).float()
            for layer, states in batch["teacher_hidden"].items()
        }

    def _log_step(
        self,
        means: torch.Tensor,
        count: int,
        weights: LossWeights,
        rates: Dict[str, float],
        meter: Throughput,
        metrics: Optional[MetricsLogger],
    ) -> None:
        means = all_reduce_mean(self.ctx, means).cpu()
        loss, kd, sv = means.tolist()
        if not torch.isfinite(means).all():
            raise FloatingPointError(
                f"the loss is {loss} at epoch {self.epoch + 1}, step "
                f"{self.step}: lower the learning rates or clip gradients"
            )
        speed = meter.report(self.step, count * self.batch_size * self.ctx.world_size)
        if metrics is None:
            return
        record: Dict[str, Any] = {
            "kind": "step",
            "epoch": self.epoch + 1,
            "step": self.step,
            "loss": loss,
        }
        if weights.uses_kd:
            record.update(kd=kd, kd_weight=weights.kd)
        if weights.uses_sv:
            record["sv"] = sv
        record.update({f"lr_{name}": rate for name, rate in rates.items()})
        record.update(speed)
        metrics.log(record)
        parts = " ".join(f"{k} {record[k]:.4g}" for k in ("kd", "sv") if k in record)
        logging.info(
            "epoch %d/%d step %d/%d (%d): loss %.4g %s | lr %s | %.2f steps/s, %.1f samples/s, "
            "ETA %s",
            self.epoch + 1,
            self.cfg.optim.epochs,
            self.epoch_step,
            self.steps_per_epoch,
            self.step,
            loss,
            parts,
            " ".join(f"{name} {rate:.2e}" for name, rate in rates.items()),
            speed["steps_per_s"],
            speed["samples_per_s"],
            format_duration(speed["eta_s"]),
        )

    def _save_latest(self, seconds: float) -> None:
        self.train_seconds += seconds
        if self.ctx.is_main:
            save_checkpoint(self._checkpoint_dir() / LATEST, self.state())

    def _end_epoch(self, metrics: Optional[MetricsLogger], seconds: float) -> None:
        """Validate, select, agree across ranks and checkpoint the epoch just trained."""
        started = time.monotonic()
        epoch = self.epoch
        fingerprints = check_replicas_agree(self.ctx, self.objective)
        if self.ctx.is_distributed:
            logging.info(
                "the weights agree across %d ranks (sha256 %s)",
                self.ctx.world_size,
                fingerprints[0][:16],
            )
        eer = self.validator.eer(self.objective.model, self.device) if self.validator else None
        self.valid_eers.append(eer)
        if self.ctx.is_main and self._is_best(eer):
            self.best_epoch = epoch
            save_checkpoint(self._checkpoint_dir() / BEST, self.objective.model.state_dict())
        self.epoch, self.epoch_step = epoch + 1, 0
        self.sampler.set_epoch(self.epoch)
        self.train_seconds += time.monotonic() - started
        if self.ctx.is_main:
            # Rank 0 opened the metrics, and has a best epoch: the first epoch at least.
            assert metrics is not None and self.best_epoch is not None
            checkpoint_dir = self._checkpoint_dir()
            save_checkpoint(checkpoint_dir / epoch_checkpoint_name(epoch + 1), self.state())
            (checkpoint_dir / LATEST).unlink(missing_ok=True)
            prune_checkpoints(
                checkpoint_dir, max(self.cfg.train.keep_last, self.cfg.train.average_last, 1)
            )
            best = self.valid_eers[self.best_epoch]
            metrics.log(
                {
                    "kind": "epoch",
                    "epoch": epoch + 1,
                    "step": self.step,
                    "valid_eer": eer,
                    "best_epoch": self.best_epoch + 1,
                    "best_valid_eer": best,
                    "epoch_seconds": seconds,
                }
            )
            logging.info(
                "epoch %d/%d done in %s: validation EER %s (best: epoch %d, %s)",
                epoch + 1,
                self.cfg.optim.epochs,
                format_duration(seconds),
                _percent(eer),
                self.best_epoch + 1,
                _percent(best),
            )
        barrier(self.ctx)

    def _is_best(self, eer: Optional[float]) -> bool:
        """Without validation the newest epoch counts as the best."""
        if eer is None or self.best_epoch is None:
            return True
        best = self.valid_eers[self.best_epoch]
        return best is None or eer < best

    # -----------------------------------------------------------------------------------------
    # The trained model

    def write_final(self) -> Path:
        """``final/``: the best epoch, or the average of the last epochs (rank 0)."""
        cfg, model = self.cfg, self.objective.model
        meta: Dict[str, Any] = {
            "teacher": cfg.teacher.path,
            "epochs": cfg.optim.epochs,
            "steps": self.step,
            "world_size": self.ctx.world_size,
            "valid_eers": self.valid_eers,
            "train_seconds": round(self.train_seconds, 1),
        }
        if cfg.train.average_last > 0:
            paths = epoch_checkpoints(self._checkpoint_dir())[-cfg.train.average_last :]
            model.load_state_dict(
                average_model_states([load_checkpoint(path)["model"] for path in paths])
            )
            meta["averaged_checkpoints"] = [path.name for path in paths]
            meta["best_epoch"] = None
            meta["valid_eer"] = self.validator.eer(model, self.device) if self.validator else None
        else:
            assert self.best_epoch is not None, "write_final follows a trained epoch"
            model.load_state_dict(load_checkpoint(self._checkpoint_dir() / BEST))
            meta["best_epoch"] = self.best_epoch + 1
            meta["valid_eer"] = self.valid_eers[self.best_epoch]
        # Compute is counted (save_final: meta.json's macs_per_second), not timed: timings on a
        # shared machine moved by 0.3 between runs; bench/ssl_speed.py times the paper's shapes.
        final_dir = save_final(self.exp_dir / FINAL_DIR, model, cfg, meta)
        logging.info(
            "wrote %s: %s, validation EER %s",
            final_dir,
            f"epoch {meta['best_epoch']}"
            if meta["best_epoch"]
            else "average of " + ", ".join(meta["averaged_checkpoints"]),
            _percent(meta["valid_eer"]),
        )
        return final_dir


def _check_loss_schedule(cfg: SystemConfig) -> set:
    """The distinct (KD on, SV on) phases over the epochs; every epoch needs a loss."""
    phases = set()
    for epoch in range(cfg.optim.epochs):
        weights = loss_weights(cfg, epoch)
        if not (weights.uses_kd or weights.uses_sv):
            raise InputError(
                "kd/sv config",
                f"epoch {epoch + 1} would train on no loss (KD weight 0 and "
                f"sv.from_epoch={cfg.sv.from_epoch})",
                hint="set sv.from_epoch to at most kd.until_epoch",
            )
        phases.add((weights.uses_kd, weights.uses_sv))
    return phases


def _per_rank_batch(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise InputError(
            "optim.batch_size",
            f"{batch_size} is not a multiple of the {world_size} training processes",
            hint="the batch is global: choose a multiple of the process count",
        )
    return batch_size // world_size


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
