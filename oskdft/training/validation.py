"""Model selection: the EER of the held-out validation trials (stage 1's ``data/valid/``),
scored by the cosine of full-utterance embeddings. Never a test list."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from lhotse import CutSet

from oskdft.data.windows import VALID_SET
from oskdft.embedding.extract import embed_cuts
from oskdft.embedding.shards import cuts_manifest_path
from oskdft.models.system import SpeakerModel
from oskdft.scoring.embeddings import length_normalize
from oskdft.scoring.metrics import compute_eer
from oskdft.scoring.ops import rowwise_dot
from oskdft.scoring.trials import read_trials, trial_rows
from oskdft.utils.errors import InputError
from oskdft.utils.io import Pathlike


class Validator:
    """Validation cuts and trials, read once; :meth:`eer` embeds and scores them.

    :param batch_seconds: the most padded audio per model call (``eval.batch_seconds``).
    """

    def __init__(self, data_dir: Pathlike, batch_seconds: float):
        self.manifest = cuts_manifest_path(data_dir, VALID_SET)
        self.trials_path = Path(data_dir) / VALID_SET / f"trials_{VALID_SET}"
        for path in (self.manifest, self.trials_path):
            if not path.is_file():
                raise InputError(path, "validation data not found", hint="run stage 1")
        self.cuts = list(CutSet.from_file(self.manifest))
        self.trials = read_trials(self.trials_path)
        self.batch_seconds = batch_seconds

    def eer(self, model: SpeakerModel, device: torch.device) -> float:
        """EER (a fraction) of ``model`` on the validation trials."""
        table = embed_cuts(model, self.cuts, device, batch_seconds=self.batch_seconds)
        index = {utt: row for row, utt in enumerate(table)}
        embeddings = length_normalize(np.stack(list(table.values())).astype(np.float64))
        enrol, test = trial_rows(self.trials_path, self.trials, index, self.manifest)
        scores = rowwise_dot(embeddings, embeddings, enrol, test)
        return compute_eer(scores, self.trials.labels)[0]


def make_validator(data_dir: Pathlike, valid_speakers: int,
                   batch_seconds: float) -> Optional[Validator]:
    """The validator, or None when the data config holds no speakers out
    (``data.valid_speakers: 0``: the last epoch is then taken)."""
    return Validator(data_dir, batch_seconds) if valid_speakers > 0 else None
