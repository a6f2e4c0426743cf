"""oskdft: One-Step Knowledge Distillation and Fine-Tuning recipes for speaker verification.

Module map: each layer, the oskdft layers it may import (``*``: all, ``-``: none), then its
rules. Nothing imports upward; ``tests/test_layering.py`` reads this map and enforces it::

    layout    : -                                                      | no torch
    utils     : layout                                                 | no torch
    config    : utils layout                                           | no torch
    data      : config utils layout
    models    : config utils layout                                    | no file I/O
    losses    : config utils layout                                    | no file I/O
    scoring   : config utils layout                                    | no torch
    cache     : models losses data config utils layout
    embedding : models data scoring config utils layout
    training  : models losses data cache embedding scoring config utils layout
    cli       : *                                                      | parses arguments

``layout`` names the files that several stages share, and the audio constants.
``oskdft.data.audio`` is the one place that reads audio. ``local/*.py`` (the stage scripts run.sh
calls) and the layers marked "parses arguments" parse command lines; nothing else does.
"""

__version__ = "0.1.0"
