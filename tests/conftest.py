"""What every test gets."""

import logging

import pytest


@pytest.fixture(autouse=True)
def restore_root_logger():
    """Entry points (``oskdft`` commands, train_system) configure the root logger, binding a
    handler to the sys.stderr of the moment: under capsys a stream closed when the test ends.
    Put the root logger back as it was, so later tests do not log into a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
