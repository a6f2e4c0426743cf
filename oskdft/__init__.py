"""oskdft: One-Step Knowledge Distillation and Fine-Tuning recipes for speaker verification.

Module map: each layer, the oskdft layers it may import (``*``: all, ``-``: none), then its
rules. Nothing imports upward; ``tests/test_layering.py`` reads this map and enforces it::

    layout    : -                                                      | no torch
    utils     : -                                                      | no torch
    config    : utils layout                                           | no torch
    data      : config utils layout
    models    : config utils layout                                    | no file I/O
    losses    : config utils layout                                    | no file I/O
    scoring   : config utils layout                                    | no torch
    recipes   : data scoring utils layout
    cache     : models losses data config utils layout
    model_dir : models config utils layout
    embedding : model_dir models data config utils layout
    training  : model_dir models losses data cache embedding scoring config utils layout
    inference : model_dir embedding data scoring config utils layout
    export    : inference model_dir embedding data scoring utils layout
    cli       : *                                                      | parses arguments

``layout`` names the files that several stages share, and the audio constants. ``recipes``
write whole corpora for stage 0 (one per ``egs/<egs>/prepare.py``), next to the MFCC baseline
that rates a corpus (torchaudio features, so not in ``scoring``). ``model_dir`` is the trained
model's directory (``exp/<system>/final``): training writes it, stages 4 to 6 and serving read
it. It does file I/O, so not in ``models``; and training validates through ``embedding``, so it
sits below both. ``inference`` serves a model (``oskdft verify``, ``embed`` and ``info``) and
``export`` writes stage 6's serving files.
``oskdft.data.audio`` is the one place that reads audio. ``local/*.py`` (the stage scripts run.sh
calls) and the layers marked "parses arguments" parse command lines; nothing else does.
"""

__version__ = "0.1.0"
