import math

import pytest
import torch

from oskdft.losses.aam import AAMSoftmax


def test_learns_a_small_separable_problem():
    torch.manual_seed(0)
    centres = torch.randn(4, 6) * 3
    labels = torch.arange(4).repeat_interleave(16)
    features = centres[labels] + 0.3 * torch.randn(64, 6)
    embedder = torch.nn.Linear(6, 8)
    head = AAMSoftmax(8, num_classes=4, margin=0.2, scale=30.0)
    optimiser = torch.optim.Adam([*embedder.parameters(), *head.parameters()], lr=0.05)
    first = None
    for _ in range(60):
        loss = head(embedder(features), labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < 0.1 * first
    assert torch.equal(head.cosine(embedder(features)).argmax(dim=1), labels)


def test_true_class_logit_is_cos_theta_plus_margin():
    head = AAMSoftmax(2, num_classes=2, margin=0.2, scale=2.0)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    # theta_true = 0 and theta_other = pi/2: logits 2 cos(0.2) and 0.
    loss = head(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    expected = -math.log(math.exp(2 * math.cos(0.2)) / (math.exp(2 * math.cos(0.2)) + 1))
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    no_margin = AAMSoftmax(2, num_classes=2, margin=0.0, scale=2.0)
    no_margin.load_state_dict(head.state_dict())
    embeddings, labels = torch.randn(5, 2), torch.tensor([0, 1, 0, 1, 1])
    assert head(embeddings, labels) > no_margin(embeddings, labels)


def test_inverse_frequency_weights_average_the_classes():
    torch.manual_seed(0)
    plain = AAMSoftmax(4, num_classes=2)
    weighted = AAMSoftmax(4, num_classes=2, class_counts=[30, 10])
    weighted.weight = plain.weight
    embeddings, labels = torch.randn(4, 4), torch.tensor([0, 0, 0, 1])
    per_utterance = torch.stack(
        [plain(e[None], y[None]) for e, y in zip(embeddings, labels, strict=True)]
    )
    # Weights 1/30 and 1/10: each class counts as much as the other, whatever its frequency.
    class_means = torch.stack([per_utterance[:3].mean(), per_utterance[3]])
    expected = (class_means[0] * 3 / 30 + class_means[1] / 10) / (3 / 30 + 1 / 10)
    assert torch.allclose(weighted(embeddings, labels), expected, atol=1e-6)
    assert not torch.allclose(plain(embeddings, labels), expected, atol=1e-4)
    assert torch.allclose(weighted.class_weights.mean(), torch.tensor(1.0))


@pytest.mark.parametrize("counts", [[1, 0], [1, 2, 3]])
def test_bad_class_counts_are_refused(counts):
    with pytest.raises(ValueError, match="2 positive counts"):
        AAMSoftmax(4, num_classes=2, class_counts=counts)
