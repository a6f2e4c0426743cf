"""Logging in one shape for every stage (the ESPnet/icefall format of utils/log.sh)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

from oskdft.utils.io import Pathlike

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def setup_logging(log_file: Optional[Pathlike] = None, rank: int = 0) -> None:
    """Log to stderr, and to ``log_file`` when given. Ranks other than 0 log warnings only,
    so a DDP run prints each line once."""
    level = logging.INFO if rank == 0 else logging.WARNING
    handlers: List[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(
        level=level, format=LOG_FORMAT, datefmt=DATE_FORMAT, handlers=handlers, force=True
    )
