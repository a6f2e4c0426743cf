import torch

from oskdft.models.ecapa import (
    EcapaTdnn,
    masked_instance_norm,
    uniform_weights,
    weighted_mean_std,
)


def test_embedding_shape_and_paper_blocks():
    model = EcapaTdnn(input_dim=24, channels=32, embed_dim=12).eval()
    assert model(torch.randn(3, 24, 40)).shape == (3, 12)
    assert [block.convs[0].dilation[0] for block in model.blocks] == [2, 3, 4]
    assert len(model.blocks[0].convs) == 7  # scale 8: seven convolved groups, one passed on


def test_masked_rows_embed_like_the_unpadded_utterance():
    torch.manual_seed(0)
    model = EcapaTdnn(input_dim=16, channels=32, embed_dim=8).eval()
    x = torch.randn(2, 16, 30)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 17:] = False
    batch = model(x, mask)
    assert torch.allclose(batch[1], model(x[1:, :, :17])[0], atol=1e-5)
    assert torch.allclose(batch[0], model(x[:1])[0], atol=1e-5)


def test_masked_instance_norm_normalises_valid_frames_only():
    x = torch.randn(2, 4, 10) * 3 + 1
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, 6:] = False
    y = masked_instance_norm(x, mask)
    assert torch.allclose(y[0, :, :6].mean(dim=1), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y[0, :, :6].var(dim=1, unbiased=False), torch.ones(4), atol=1e-3)
    assert torch.equal(y[0, :, 6:], torch.zeros(4, 4))
    assert torch.allclose(y[0, :, :6], masked_instance_norm(x[:1, :, :6], None)[0], atol=1e-6)


def test_unbiased_context_std_is_torch_var_over_valid_frames():
    # The original code's global context: sqrt(torch.var(x, dim=2).clamp(min=1e-4)), unbiased.
    x = torch.randn(2, 5, 12) * 2
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    weights = uniform_weights(mask)
    _, unbiased = weighted_mean_std(x, weights, unbiased=True)
    _, biased = weighted_mean_std(x, weights)
    assert torch.allclose(unbiased[0], x[0].var(dim=1, unbiased=True).clamp(min=1e-4).sqrt())
    assert torch.allclose(unbiased[1], x[1, :, :7].var(dim=1, unbiased=True).clamp(min=1e-4).sqrt())
    assert torch.allclose(biased[0], x[0].var(dim=1, unbiased=False).clamp(min=1e-4).sqrt())


def test_unbiased_context_std_changes_the_embedding():
    torch.manual_seed(0)
    model = EcapaTdnn(input_dim=16, channels=32, embed_dim=8).eval()
    torch.manual_seed(0)
    unbiased = EcapaTdnn(input_dim=16, channels=32, embed_dim=8, unbiased_context_std=True).eval()
    x = torch.randn(2, 16, 30)
    assert not torch.allclose(model(x), unbiased(x))


def test_only_the_paper_config_pools_with_the_unbiased_context_std():
    from pathlib import Path

    from oskdft.config import load_config

    conf = Path(__file__).parents[2] / "egs" / "voxceleb" / "conf"
    assert load_config(conf / "oskdft_paper.yaml").backend.unbiased_context_std
    assert not load_config(conf / "oskdft.yaml").backend.unbiased_context_std
