"""Model selection scores against the original's evaluation, written out here: the fused score
of full utterances and 5 crops, crops 0-1 on the KD branch (eval.original_crop_branches)."""

import itertools

import numpy as np
import pytest
import torch
from lhotse import CutSet

from oskdft.config import EvalConfig
from oskdft.data.audio import SAMPLE_RATE, load_audio
from oskdft.embedding.views import crop_audio
from oskdft.layout import manifest_path
from oskdft.training.validation import Validator
from tests.embedding.tiny_system import (
    embed_alone,
    kd_branch_model,
    original_fused_score,
    scratch_config,
    tiny_model,
    write_set,
)


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory):
    """A data dir with ``valid`` utterances of 1.2-2.5 s and every pair of them as a trial."""
    root = tmp_path_factory.mktemp("valid")
    wavs = write_set(root, "valid", [1.2, 2.5, 1.6, 2.1, 1.9, 1.4])
    lines = [
        f"{a} {b} {'target' if a.split('-')[0] == b.split('-')[0] else 'nontarget'}"
        for a, b in itertools.combinations(sorted(wavs), 2)
    ]
    (root / "data" / "valid").mkdir(parents=True)
    (root / "data" / "valid" / "trials_valid").write_text("\n".join(lines) + "\n")
    return root / "data"


def trial_pairs(data_dir):
    lines = (data_dir / "valid" / "trials_valid").read_text().split("\n")
    return [line.split()[:2] for line in lines if line]


@pytest.mark.parametrize("original", [True, False])
def test_fused_validation_score_is_the_originals_with_its_crop_branches(valid_dir, original):
    torch.set_num_threads(1)
    model = tiny_model(scratch_config(ssl={"doubled_residual": True}))
    plain = kd_branch_model(model)
    cfg = EvalConfig(
        valid_score="fused", crop_seconds=1.0, num_crops=5, original_crop_branches=original
    )
    scores = Validator(valid_dir, cfg).scores(model, torch.device("cpu"))

    audio = {
        cut.id: load_audio(cut)
        for cut in CutSet.from_file(manifest_path(valid_dir, "valid", "cuts"))
    }
    full = {utt: embed_alone(model, a) for utt, a in audio.items()}
    crops = {
        utt: [
            embed_alone(plain if original and i < 2 else model, c)
            for i, c in enumerate(crop_audio(a, SAMPLE_RATE, 5))
        ]
        for utt, a in audio.items()
    }
    expected = [
        original_fused_score(full[a], full[b], crops[a], crops[b])
        for a, b in trial_pairs(valid_dir)
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_cosine_validation_score_uses_the_full_utterances_alone(valid_dir):
    model = tiny_model(scratch_config())
    scores = Validator(valid_dir, EvalConfig()).scores(model, torch.device("cpu"))
    audio = {
        cut.id: load_audio(cut)
        for cut in CutSet.from_file(manifest_path(valid_dir, "valid", "cuts"))
    }
    full = {utt: embed_alone(model, a) for utt, a in audio.items()}
    expected = [
        np.dot(full[a], full[b]) / np.linalg.norm(full[a]) / np.linalg.norm(full[b])
        for a, b in trial_pairs(valid_dir)
    ]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
