"""median_times on a fake clock: each fake encoder advances it by the durations it is given, so
every figure is exact (no sleeping, nothing a busy machine can move)."""

import types

import pytest
import torch

from oskdft.layout import SAMPLE_RATE
from oskdft.models import speed
from oskdft.models.speed import WARMUP_CALLS, median_times
from tests.embedding.tiny_system import scratch_config, tiny_model


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class FakeEncoder:
    """Takes ``durations[i]`` seconds of the fake clock on its i-th timed call (warm-up calls
    take 100 s, which no median may see); records each call's name, shape and thread count."""

    def __init__(self, name, durations, clock, calls):
        self.name, self.durations, self.clock, self.calls = name, list(durations), clock, calls
        self.warmups = 0

    def __call__(self, wav):
        self.calls.append((self.name, tuple(wav.shape), torch.get_num_threads()))
        if self.warmups < WARMUP_CALLS:
            self.warmups += 1
            self.clock.now += 100.0
        else:
            self.clock.now += self.durations.pop(0)


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(speed, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    return clock


def test_each_model_gets_the_median_of_its_timed_calls_on_the_requested_audio(clock):
    calls = []
    durations = [0.05, 0.01, 0.02, 0.04, 0.90]  # median 0.04; the mean (0.204) would differ
    [seconds] = median_times(
        [FakeEncoder("a", durations, clock, calls)], seconds=0.5, batch=3, repeats=5, threads=1
    )
    assert seconds == pytest.approx(0.04)
    assert len(calls) == WARMUP_CALLS + 5
    assert {shape for _, shape, _ in calls} == {(3, SAMPLE_RATE // 2)}


def test_models_are_timed_in_interleaved_rounds_with_the_thread_count(clock):
    calls = []
    before = torch.get_num_threads()
    models = [
        FakeEncoder("student", [0.02, 0.03, 0.02, 0.03], clock, calls),
        FakeEncoder("teacher", [0.08, 0.12, 0.08, 0.12], clock, calls),
    ]
    student, teacher = median_times(models, seconds=0.1, repeats=4, threads=1)
    assert (student, teacher) == (pytest.approx(0.025), pytest.approx(0.10))
    names = [name for name, _, _ in calls]
    assert names[: 2 * WARMUP_CALLS] == ["student", "teacher"] * WARMUP_CALLS
    rounds = [names[i : i + 2] for i in range(2 * WARMUP_CALLS, len(names), 2)]
    assert rounds == [["student", "teacher"], ["teacher", "student"]] * 2  # alternating order
    assert {threads for _, _, threads in calls} == {1}
    assert torch.get_num_threads() == before


def test_a_real_encoder_can_be_timed():
    model = tiny_model(scratch_config())
    [seconds] = median_times([model.ssl_encoder], seconds=0.2, repeats=1, threads=1)
    assert seconds > 0
