"""Where training metrics go (rank 0 only): ``metrics.jsonl`` always, TensorBoard when
``train.tensorboard`` is set, Weights & Biases or Neptune only when their token is in the
environment (``WANDB_API_KEY``; ``NEPTUNE_API_TOKEN`` with ``NEPTUNE_PROJECT``). Tokens are
never read from files.

A record is one JSON object per line: ``{"kind": "step", "epoch": 1, "step": 50, "loss": ...}``
every ``train.log_every`` steps and ``{"kind": "epoch", ..., "valid_eer": ...}`` after each
epoch. A resumed run first drops the records written after its checkpoint, so every step
appears once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike, atomic_write

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

Record = Dict[str, Any]


class JsonlSink:
    """Appends records to ``metrics.jsonl``, after dropping those past ``resume_step``."""

    def __init__(self, path: Pathlike, resume_step: int):
        self.path = Path(path)
        if self.path.is_file():
            kept = self._lines_up_to(resume_step)
            with atomic_write(self.path) as f:
                f.writelines(f"{line}\n" for line in kept)
        self.file = open(self.path, "a")

    def _lines_up_to(self, resume_step: int) -> List[str]:
        """The existing lines of records up to ``resume_step``."""
        lines = self.path.read_text().splitlines()
        kept = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if i == len(lines):  # cut off by the kill that ended the previous run
                    logging.warning("%s:%d: dropping an unfinished last record", self.path, i)
                    continue
                raise InputError(self.path, f"not a JSON record: {e}", line=i) from e
            if record["step"] <= resume_step:
                kept.append(line)
        return kept

    def log(self, record: Record) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardSink:
    """Scalars under ``exp/<system>/tensorboard``; events past ``resume_step`` are purged."""

    def __init__(self, log_dir: Pathlike, resume_step: int):
        try:  # an optional dependency
            from torch.utils.tensorboard import SummaryWriter
        except ModuleNotFoundError as e:
            raise InputError(
                "train.tensorboard",
                "needs the tensorboard package",
                hint="pip install 'oskdft[tensorboard]', or set it to false",
            ) from e
        self.writer = SummaryWriter(str(log_dir), purge_step=resume_step + 1)

    def log(self, record: Record) -> None:
        for name, value in scalars(record).items():
            self.writer.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run (project ``WANDB_PROJECT``, default ``oskdft``); wandb reads its token from
    the environment itself."""

    def __init__(self, run_name: str, config: Mapping[str, Any], exp_dir: Pathlike):
        import wandb  # optional dependency

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "oskdft"),
            name=run_name,
            config=dict(config),
            dir=str(exp_dir),
        )

    def log(self, record: Record) -> None:
        self.run.log(scalars(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


class NeptuneSink:
    """A Neptune run in ``NEPTUNE_PROJECT``; neptune reads ``NEPTUNE_API_TOKEN`` itself."""

    def __init__(self, run_name: str, config: Mapping[str, Any]):
        import neptune  # optional dependency

        self.run = neptune.init_run(project=os.environ["NEPTUNE_PROJECT"], name=run_name)
        self.run["config"] = json.dumps(config)

    def log(self, record: Record) -> None:
        for name, value in scalars(record).items():
            self.run[name].append(value, step=record["step"])

    def close(self) -> None:
        self.run.stop()


def scalars(record: Record) -> Dict[str, float]:
    """The numbers of a record, named ``<kind>/<key>`` for dashboards.

    >>> scalars({"kind": "step", "step": 5, "epoch": 1, "loss": 2.5, "note": "x"})
    {'step/epoch': 1.0, 'step/loss': 2.5}
    """
    return {
        f"{record['kind']}/{key}": float(value)
        for key, value in record.items()
        if key not in ("kind", "step")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    }


class MetricsLogger:
    """Sends every record to each configured sink."""

    def __init__(self, sinks: List[Any]):
        self.sinks = sinks

    def log(self, record: Record) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_metrics(
    exp_dir: Pathlike,
    run_name: str,
    config: Mapping[str, Any],
    tensorboard: bool,
    resume_step: int = 0,
) -> MetricsLogger:
    """The sinks of rank 0 (see the module docstring)."""
    exp_dir = Path(exp_dir)
    sinks: List[Any] = [JsonlSink(exp_dir / METRICS_NAME, resume_step)]
    if tensorboard:
        sinks.append(TensorBoardSink(exp_dir / TENSORBOARD_DIR, resume_step))
    if os.environ.get("WANDB_API_KEY"):
        sinks.append(WandbSink(run_name, config, exp_dir))
    if os.environ.get("NEPTUNE_API_TOKEN"):
        if not os.environ.get("NEPTUNE_PROJECT"):
            logging.warning(
                "NEPTUNE_API_TOKEN is set but NEPTUNE_PROJECT is not: not logging to Neptune"
            )
        else:
            sinks.append(NeptuneSink(run_name, config))
    return MetricsLogger(sinks)


@dataclass
class Throughput:
    """Steps and samples per second since the last report, and the time left at that pace.

    >>> meter = Throughput(total_steps=10, start_step=0, now=0.0)
    >>> rates = meter.report(step=4, samples=40, now=2.0)
    >>> rates["steps_per_s"], rates["samples_per_s"], rates["eta_s"]
    (2.0, 20.0, 3.0)
    """

    total_steps: int
    start_step: int
    now: float = field(default_factory=time.monotonic)

    def __post_init__(self):
        self.last_time, self.last_step = self.now, self.start_step

    def restart(self, step: int) -> None:
        """Measure from now and ``step`` on (after a pause such as validation)."""
        self.last_time, self.last_step = time.monotonic(), step

    def report(self, step: int, samples: int, now: Optional[float] = None) -> Dict[str, float]:
        """Rates since the previous report; ``samples`` were trained on since then."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.last_time, 1e-9)
        steps_per_s = (step - self.last_step) / elapsed
        self.last_time, self.last_step = now, step
        eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else float("inf")
        return {"steps_per_s": steps_per_s, "samples_per_s": samples / elapsed, "eta_s": eta}


def format_duration(seconds: float) -> str:
    """``h:mm:ss``.

    >>> format_duration(3725.4)
    '1:02:05'
    """
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
