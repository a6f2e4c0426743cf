"""How long the SSL encoder takes on a fixed piece of audio: the paper's "inference time of the
SSL model" claim (79% less for the student than for the teacher), measured by
``bench/ssl_speed.py``. Training records no timing: it counts compute instead
(:func:`oskdft.models.describe.macs_per_second`), which a shared machine cannot move.

Models are timed side by side: in each round one call of each, alternating which goes first,
after warm-up calls; the median of the rounds is reported. Interleaving spreads any change of
machine load (other processes, CPU frequency) over all of them, so their ratios are stable
even when the absolute times are not. CPU timings use a fixed thread count (2 by default, the
setting of the paper-number check in the project notes); CUDA timings synchronise around each
call.

>>> import torch
>>> slow = lambda wav: torch.stack([wav @ wav.T for _ in range(20)])
>>> fast = lambda wav: wav @ wav.T
>>> fast_time, slow_time = median_times([fast, slow], seconds=0.5, batch=8, repeats=3, threads=1)
>>> fast_time < slow_time
True
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable, Iterator, List, Union

import torch
from torch import Tensor

from oskdft.layout import SAMPLE_RATE

WARMUP_CALLS = 2

SSLForward = Callable[[Tensor], Any]


def median_times(
    forwards: List[SSLForward],
    seconds: float = 4.0,
    batch: int = 1,
    repeats: int = 10,
    threads: int = 2,
    device: Union[str, torch.device] = "cpu",
) -> List[float]:
    """Median wall time of each of ``forwards`` on ``batch`` random waveforms of ``seconds``,
    timed side by side in interleaved rounds (see the module docstring).

    :param forwards: the encoders (``nn.Module``s or any callables on ``[batch, samples]``),
        already on ``device`` and in eval mode.
    :param threads: torch's CPU threads while timing (restored afterwards).
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    wav = torch.randn(batch, round(seconds * SAMPLE_RATE), generator=generator).to(device)
    times: List[List[float]] = [[] for _ in forwards]
    with torch_threads(threads), torch.inference_mode():
        for _ in range(WARMUP_CALLS):
            for forward in forwards:
                forward(wav)
        for round_index in range(repeats):
            # Alternate who goes first, so neither always runs on a cache the other warmed.
            order = list(range(len(forwards)))
            if round_index % 2:
                order.reverse()
            for index in order:
                times[index].append(_time_call(forwards[index], wav, device))
    return [statistics.median(t) for t in times]


def _time_call(forward: SSLForward, wav: Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    forward(wav)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with torch using ``threads`` CPU threads, then restore the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
