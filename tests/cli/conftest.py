import pytest

from oskdft.models.speed import torch_threads
from tests.cli.deployed_recipe import build_deployed_recipe


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (see tests/embedding/conftest.py)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    """The recipe directory of :func:`build_deployed_recipe` (stages 4, 5 and 6 done)."""
    root = tmp_path_factory.mktemp("deployed")
    # Session fixtures start before the module's one_torch_thread.
    with torch_threads(1):
        build_deployed_recipe(root)
    return root
