import pytest

from tests.training.tiny_recipe import make_tiny_recipe


@pytest.fixture(scope="package")
def recipe(tmp_path_factory):
    """The tiny recipe directory, shared by the training tests (each trains under its own
    exp/<name>)."""
    return make_tiny_recipe(tmp_path_factory.mktemp("recipe"))
