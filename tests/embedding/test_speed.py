import time

import pytest
import torch

from oskdft.embedding.speed import SAMPLE_RATE, WARMUP_CALLS, measure_ssl_seconds, median_times
from tests.embedding.tiny_system import scratch_config, tiny_model


class Sleeper:
    """An "encoder" that takes a known time and records its calls."""

    def __init__(self, name, seconds, calls):
        self.name, self.seconds, self.calls = name, seconds, calls

    def __call__(self, wav):
        self.calls.append((self.name, tuple(wav.shape), torch.get_num_threads()))
        time.sleep(self.seconds)


def test_measure_gives_the_median_call_time_on_the_requested_audio():
    calls = []
    seconds = measure_ssl_seconds(Sleeper("a", 0.01, calls), seconds=0.5, batch=3, repeats=4,
                                  threads=1)
    assert 0.01 <= seconds < 0.03  # sleeping oversleeps a little on a busy machine, not 2x
    assert len(calls) == WARMUP_CALLS + 4
    assert {shape for _, shape, _ in calls} == {(3, SAMPLE_RATE // 2)}


def test_models_are_timed_in_interleaved_rounds_with_the_thread_count():
    calls = []
    before = torch.get_num_threads()
    student, teacher = median_times([Sleeper("student", 0.02, calls),
                                     Sleeper("teacher", 0.08, calls)],
                                    seconds=0.1, repeats=4, threads=1)
    assert student / teacher == pytest.approx(0.25, abs=0.08)
    names = [name for name, _, _ in calls]
    assert names[: 2 * WARMUP_CALLS] == ["student", "teacher"] * WARMUP_CALLS
    rounds = [names[i:i + 2] for i in range(2 * WARMUP_CALLS, len(names), 2)]
    assert rounds == [["student", "teacher"], ["teacher", "student"]] * 2  # alternating order
    assert {threads for _, _, threads in calls} == {1}
    assert torch.get_num_threads() == before


def test_a_real_encoder_can_be_timed():
    model = tiny_model(scratch_config())
    assert measure_ssl_seconds(model.ssl_encoder, seconds=0.2, repeats=1, threads=1) > 0
