"""Metric sinks: metrics.jsonl across a resume, TensorBoard, W&B only with its token."""

import json
import sys
import types

import pytest

from oskdft.training.loggers import JsonlSink, Throughput, open_metrics
from oskdft.utils.errors import InputError


def read_steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_resume_drops_the_records_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path, resume_step=0)
    for step in (2, 4, 6):
        sink.log({"kind": "step", "step": step, "loss": 1.0})
    sink.close()
    resumed = JsonlSink(path, resume_step=4)  # killed after step 6, checkpoint at step 4
    resumed.log({"kind": "step", "step": 6, "loss": 0.5})
    resumed.close()
    assert read_steps(path) == [2, 4, 6]
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == 0.5


def test_resume_drops_a_last_record_cut_off_by_a_kill(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "step", "step": 2}\n{"kind": "step", "st')
    JsonlSink(path, resume_step=4).close()
    assert read_steps(path) == [2]
    assert f"{path}:2: dropping an unfinished last record" in caplog.text


def test_a_malformed_record_before_the_last_names_its_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "step", "step": 2}\nnot json\n{"kind": "step", "step": 4}\n')
    with pytest.raises(InputError, match=f"{path}:2: not a JSON record"):
        JsonlSink(path, resume_step=4)


def test_remote_loggers_only_with_their_token(tmp_path, monkeypatch):
    logged = []

    class FakeRun:
        def log(self, values, step):
            logged.append((step, values))

        def finish(self):
            logged.append("finished")

    fake = types.SimpleNamespace(init=lambda **kwargs: FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    metrics = open_metrics(tmp_path, "run", {}, tensorboard=False)
    metrics.log({"kind": "step", "step": 1, "loss": 2.0})
    metrics.close()
    assert logged == []
    monkeypatch.setenv("WANDB_API_KEY", "secret")
    metrics = open_metrics(tmp_path, "run", {}, tensorboard=False, resume_step=1)
    metrics.log({"kind": "epoch", "step": 2, "valid_eer": 0.25, "note": "text"})
    metrics.close()
    assert logged == [(2, {"epoch/valid_eer": 0.25}), "finished"]
    assert read_steps(tmp_path / "metrics.jsonl") == [1, 2]


def test_tensorboard_events_are_written(tmp_path):
    metrics = open_metrics(tmp_path, "run", {}, tensorboard=True)
    metrics.log({"kind": "step", "step": 1, "loss": 2.0})
    metrics.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_throughput_and_eta():
    meter = Throughput(total_steps=100, start_step=50, now=10.0)
    rates = meter.report(step=60, samples=320, now=15.0)
    assert rates == {"steps_per_s": 2.0, "samples_per_s": 64.0, "eta_s": 20.0}
