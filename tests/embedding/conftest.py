import pytest

from oskdft.models.speed import torch_threads


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared, busy CPU two threads spinning at
    OpenMP barriers made them 40x slower."""
    with torch_threads(1):
        yield
