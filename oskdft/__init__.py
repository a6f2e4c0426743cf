"""oskdft: One-Step Knowledge Distillation and Fine-Tuning recipes for speaker verification.

Module map; an arrow means "may import", and nothing imports upward
(``tests/test_layering.py`` enforces it)::

    cli ──▶ training ──▶ {models, losses, data, cache, utils, config}
    cli ──▶ embedding ──▶ {models, data, utils, config}
    cli ──▶ scoring ──▶ {utils, config}            (numpy/scipy only, no torch)
    cache ──▶ {models, data, utils, config}
    data ──▶ {utils, config}     models ──▶ {utils, config}     losses ──▶ {utils, config}
    config ──▶ utils

``oskdft.data.audio`` is the one place that reads audio. ``models`` and ``losses`` do no file
I/O. ``local/*.py`` (the stage scripts run.sh calls) and ``oskdft.cli`` parse arguments; nothing
else does.
"""

__version__ = "0.1.0"
