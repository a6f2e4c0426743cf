# Autouse: tiny models on one torch thread, as in tests/embedding.
from tests.embedding.conftest import one_torch_thread  # noqa: F401
