"""The filter-bank front end of ``ssl.source: fbank``, against torchaudio's Kaldi fbank."""

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from oskdft.config import SystemConfig, apply_overrides
from oskdft.models.fbank import FbankFrontEnd
from oskdft.utils.errors import InputError


def kaldi_fbank_minus_mean(wav: torch.Tensor, **options) -> torch.Tensor:
    """torchaudio's Kaldi fbank of one utterance in 16-bit units (WeSpeaker's call), minus its
    mean over frames (WeSpeaker's CMN)."""
    features = kaldi.fbank(wav[None] * 32768, dither=0.0, sample_frequency=16000, **options)
    return features - features.mean(dim=0)


def features(front_end, wav, lengths=None):
    with torch.no_grad():
        out = front_end(wav, lengths)
    return out.hidden_states[0], out.frame_mask


@pytest.mark.parametrize("mels,length,shift", [(80, 25.0, 10.0), (40, 32.0, 8.0)])
def test_features_are_kaldis_fbank_minus_the_utterance_mean(mels, length, shift):
    front_end = FbankFrontEnd(
        num_mel_bins=mels, frame_length_ms=length, frame_shift_ms=shift
    ).eval()
    options = {"num_mel_bins": mels, "frame_length": length, "frame_shift": shift}
    generator = torch.Generator().manual_seed(0)
    for samples in (16000, 23457):
        wav = 0.1 * torch.randn(samples, generator=generator)
        ours, mask = features(front_end, wav[None])
        expected = kaldi_fbank_minus_mean(wav, **options)
        assert mask is None and ours.shape == (1, *expected.shape)
        torch.testing.assert_close(ours[0], expected, atol=2e-3, rtol=0)


def test_a_padded_batch_gives_each_row_its_own_features():
    front_end = FbankFrontEnd().eval()
    lengths = torch.tensor([24000, 16000, 5210])
    wav = 0.1 * torch.randn(3, 24000)
    wav[1, 16000:] = torch.randn(8000)  # garbage past the end must not matter
    batch, mask = features(front_end, wav, lengths)
    assert mask.sum(dim=1).tolist() == [148, 98, 31]  # 1 + (length - 400) // 160
    for row, length in enumerate(lengths.tolist()):
        alone, _ = features(front_end, wav[row : row + 1, :length])
        frames = alone.shape[1]
        torch.testing.assert_close(batch[row, :frames], alone[0], atol=1e-4, rtol=0)
        assert not batch[row, frames:].any()  # padded frames are zeros


def test_dither_is_random_in_training_and_absent_in_evaluation():
    wav = 0.1 * torch.randn(1, 8000)
    front_end = FbankFrontEnd(dither=1.0)
    clean, _ = features(FbankFrontEnd(dither=0.0).train(), wav)
    first, _ = features(front_end.train(), wav)
    second, _ = features(front_end, wav)
    assert not torch.equal(first, second) and not torch.equal(first, clean)
    evaluated, _ = features(front_end.eval(), wav)
    assert torch.equal(evaluated, clean)


def test_autocast_leaves_the_features_in_float32():
    front_end = FbankFrontEnd().eval()
    wav = 0.1 * torch.randn(2, 16000)
    expected, _ = features(front_end, wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast, _ = features(front_end, wav)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, expected)


def test_a_filter_bank_has_nothing_to_distil():
    with pytest.raises(ValueError, match="no hidden states to distil"):
        FbankFrontEnd()(torch.randn(1, 8000), kd_branch=True)
    cfg = apply_overrides(SystemConfig(), ["ssl.source=fbank", "teacher.path=t"])
    with pytest.raises(
        InputError, match="ssl.source=fbank has no hidden states to distil kd.loss=mse_last"
    ):
        cfg.check_teacher("conf/x.yaml")
    apply_overrides(cfg, ["kd.loss=none", "teacher.path=null"]).check_teacher("conf/x.yaml")


@pytest.mark.parametrize(
    "override,problem",
    [
        ("ssl.fbank.num_mel_bins=2", "must be at least 4"),
        ("ssl.fbank.frame_shift_ms=0", "must be positive"),
        ("ssl.fbank.dither=-1", "must be at least 0"),
    ],
)
def test_fbank_options_out_of_range_are_refused(override, problem):
    with pytest.raises(InputError, match=problem):
        apply_overrides(SystemConfig(), [override])
