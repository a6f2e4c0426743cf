"""Model selection: the EER of the held-out validation trials (stage 1's ``data/valid/``),
never a test list. ``eval.valid_score`` picks the score: the cosine of full-utterance
embeddings, or the paper's fused score (full utterance and crops, the original's selection
score; its crops take the branches of ``eval.original_crop_branches``, as in stage 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lhotse import CutSet

from oskdft.config import EvalConfig
from oskdft.data.windows import VALID_SET
from oskdft.embedding.extract import embed_eval_views
from oskdft.layout import manifest_path
from oskdft.models.system import SpeakerModel
from oskdft.scoring.backends import build_backend
from oskdft.scoring.embeddings import Embeddings, mean_unit_crops
from oskdft.scoring.metrics import compute_eer
from oskdft.scoring.trials import read_trials, trial_rows
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike


class Validator:
    """Validation cuts and trials, read once; :meth:`eer` embeds and scores them.

    :param cfg: the system's ``eval`` section (score, crops, ``batch_seconds``: the most
        padded audio per model call).
    """

    def __init__(self, data_dir: Pathlike, cfg: EvalConfig):
        self.manifest = manifest_path(data_dir, VALID_SET, "cuts")
        self.trials_path = Path(data_dir) / VALID_SET / f"trials_{VALID_SET}"
        for path in (self.manifest, self.trials_path):
            if not path.is_file():
                raise InputError(path, "validation data not found", hint="run stage 1")
        self.cuts = list(CutSet.from_file(self.manifest))
        self.trials = read_trials(self.trials_path)
        self.cfg = cfg
        self.backend = build_backend(cfg.valid_score, cfg)

    def scores(self, model: SpeakerModel, device: torch.device) -> np.ndarray:
        """The score of every validation trial under ``model``."""
        full, crops = embed_eval_views(
            model, self.cuts, device, self.cfg, crops=self.backend.uses_crops
        )
        keys = list(full)
        data = Embeddings(
            keys,
            np.stack([full[k] for k in keys]).astype(np.float64),
            mean_unit_crops(np.stack([crops[k] for k in keys]).astype(np.float64))
            if crops
            else None,
        )
        enrol, test = trial_rows(self.trials_path, self.trials, data.index, self.manifest)
        return self.backend.score(data, enrol, test)

    def eer(self, model: SpeakerModel, device: torch.device) -> float:
        """EER (a fraction) of ``model`` on the validation trials."""
        return compute_eer(self.scores(model, device), self.trials.labels)[0]


def make_validator(data_dir: Pathlike, valid_speakers: int, cfg: EvalConfig) -> Optional[Validator]:
    """The validator, or None when the data config holds no speakers out
    (``data.valid_speakers: 0``: the last epoch is then taken)."""
    return Validator(data_dir, cfg) if valid_speakers > 0 else None
