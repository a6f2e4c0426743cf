"""Additive angular margin softmax (ArcFace / AAM-softmax), the SV fine-tuning loss.

logit_y = s * cos(theta_y + m) for the true speaker, s * cos(theta_j) for the others; past
theta_y > pi - m, where cos(theta + m) stops decreasing, the reference code uses
cos(theta_y) - m sin(m) instead, keeping the logit monotonic.

>>> head = AAMSoftmax(embed_dim=4, num_classes=3, margin=0.2, scale=30.0)
>>> loss = head(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
>>> loss.shape, bool(loss > 0)
(torch.Size([]), True)
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AAMSoftmax(nn.Module):
    """AAM-softmax over ``num_classes`` speakers.

    :param class_counts: training utterances per class; when given, the cross-entropy weighs
        class c by ``1 / count_c`` (normalised to mean 1), as the original code did.
    """

    class_weights: Optional[Tensor]  # a buffer: per-class loss weights, None for plain

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        margin: float = 0.2,
        scale: float = 30.0,
        class_counts: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_normal_(self.weight, gain=1)
        self.margin, self.scale = margin, scale
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin
        weights = None
        if class_counts is not None:
            counts = torch.as_tensor(class_counts, dtype=torch.float32)
            if counts.shape != (num_classes,) or bool((counts <= 0).any()):
                raise ValueError(f"class_counts must be {num_classes} positive counts")
            weights = 1.0 / counts
            weights = weights / weights.mean()
        self.register_buffer("class_weights", weights)

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``[B, num_classes]`` cosine similarities to the class centres (no margin)."""
        return F.linear(F.normalize(embeddings), F.normalize(self.weight))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        cosine = self.cosine(embeddings)
        sine = (1.0 - cosine * cosine).clamp(0.0, 1.0).sqrt()
        with_margin = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        with_margin = torch.where(cosine > self.threshold, with_margin, cosine - self.fallback)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        logits = self.scale * torch.where(target, with_margin, cosine)
        return F.cross_entropy(logits, labels, weight=self.class_weights)
