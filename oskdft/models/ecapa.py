"""ECAPA-TDNN (Desplanques et al., Interspeech 2020) as the OS-KDFT reference code uses it.

conv k5 -> three SE-Res2 blocks (k3, dilation 2/3/4, scale 8, each block's input the sum of the
previous outputs) -> concat -> conv 1536 -> attentive statistics pooling with global context ->
BN -> Linear -> BN. Layer order inside blocks (conv, ReLU, BN) follows the reference code.

Every operation that mixes frames takes a ``[B, T]`` frame mask, so a zero-padded batch embeds
each row as if it were alone: convolutions see zeros beyond a row's end (as their own padding
would give), and averages and the attention softmax skip padded frames.

>>> model = EcapaTdnn(input_dim=16, channels=32, embed_dim=8).eval()
>>> model(torch.randn(2, 16, 50)).shape
torch.Size([2, 8])
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn


def weighted_mean_std(
    x: Tensor, weights: Tensor, eps: float = 1e-4, unbiased: bool = False
) -> Tuple[Tensor, Tensor]:
    """Mean and standard deviation of ``x [B, C, T]`` over time under ``weights`` that sum
    to one over T (``[B, 1 or C, T]``); the variance is floored at ``eps`` as in the reference.
    ``unbiased`` divides the variance by ``1 - sum(w^2)``, which for uniform weights over n
    frames is ``torch.var``'s ``n / (n - 1)``."""
    mean = (x * weights).sum(dim=2)
    var = (x * x * weights).sum(dim=2) - mean * mean
    if unbiased:
        var = var / (1.0 - (weights * weights).sum(dim=2))
    return mean, var.clamp(min=eps).sqrt()


def uniform_weights(mask: Tensor) -> Tensor:
    """``[B, 1, T]`` weights, ``1/length`` on a row's valid frames and 0 on padding."""
    mask = mask[:, None, :].float()
    return mask / mask.sum(dim=2, keepdim=True)


def masked_instance_norm(x: Tensor, mask: Optional[Tensor], eps: float = 1e-5) -> Tensor:
    """``nn.InstanceNorm1d`` (no affine) of ``x [B, C, T]`` over each row's valid frames;
    padded frames come out as zeros.

    >>> x = torch.randn(2, 3, 7)
    >>> torch.allclose(masked_instance_norm(x, None), nn.InstanceNorm1d(3)(x), atol=1e-5)
    True
    """
    if mask is None:
        mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
    weights = uniform_weights(mask)
    mean = (x * weights).sum(dim=2, keepdim=True)
    var = ((x - mean) ** 2 * weights).sum(dim=2, keepdim=True)
    return (x - mean) / (var + eps).sqrt() * mask[:, None, :]


class SqueezeExcitation(nn.Module):
    """Channel gates from the masked time average."""

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.down = nn.Conv1d(channels, bottleneck, kernel_size=1)
        self.up = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        average = (x * uniform_weights(mask)).sum(dim=2, keepdim=True)
        return x * torch.sigmoid(self.up(torch.relu(self.down(average))))


class SERes2Block(nn.Module):
    """1x1 conv -> Res2 dilated convs (``scale`` groups, hierarchical sums) -> 1x1 conv -> SE,
    plus the block's input (residual)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 2, scale: int = 8):
        super().__init__()
        self.width = channels // scale
        self.conv_in = nn.Conv1d(channels, self.width * scale, kernel_size=1)
        self.bn_in = nn.BatchNorm1d(self.width * scale)
        padding = kernel_size // 2 * dilation
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel_size, dilation=dilation, padding=padding)
            for _ in range(scale - 1)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))
        self.conv_out = nn.Conv1d(self.width * scale, channels, kernel_size=1)
        self.bn_out = nn.BatchNorm1d(channels)
        self.se = SqueezeExcitation(channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        splits = torch.split(self.bn_in(torch.relu(self.conv_in(x))), self.width, dim=1)
        zero_padding = mask[:, None, :].to(x.dtype)
        outputs, part = [], None
        for split, conv, bn in zip(splits[:-1], self.convs, self.bns, strict=True):
            part = split if part is None else part + split
            part = bn(torch.relu(conv(part * zero_padding)))
            outputs.append(part)
        outputs.append(splits[-1])  # the last group passes through unchanged
        out = self.bn_out(torch.relu(self.conv_out(torch.cat(outputs, dim=1))))
        return x + self.se(out, mask)


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling with global context: per-channel attention over frames,
    computed from each frame and the utterance's mean and standard deviation."""

    def __init__(self, channels: int, bottleneck: int = 256, unbiased_context_std: bool = False):
        super().__init__()
        self.unbiased_context_std = unbiased_context_std
        self.attention = nn.Sequential(
            nn.Conv1d(3 * channels, bottleneck, kernel_size=1),
            nn.ReLU(),
            nn.BatchNorm1d(bottleneck),
            nn.Tanh(),
            nn.Conv1d(bottleneck, channels, kernel_size=1),
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mean, std = weighted_mean_std(x, uniform_weights(mask), unbiased=self.unbiased_context_std)
        frames = x.shape[2]
        context = torch.cat(
            [x, mean[..., None].expand(-1, -1, frames), std[..., None].expand(-1, -1, frames)],
            dim=1,
        )
        logits = self.attention(context).masked_fill(~mask[:, None, :], float("-inf"))
        mean, std = weighted_mean_std(x, torch.softmax(logits, dim=2))
        return torch.cat([mean, std], dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN on ``[B, input_dim, T]`` features, returning ``[B, embed_dim]`` embeddings.

    :param channels: C, the width of the SE-Res2 blocks (512 in the paper).
    :param pooled_channels: width of the layer before pooling (1536 = 3 x 512 in the paper); the
        pooling costs more than the blocks unless it shrinks with C.
    :param attention_channels: bottleneck of the attentive pooling.
    :param unbiased_context_std: the pooling's global context uses the unbiased standard
        deviation (the original code's ``torch.var``).
    """

    def __init__(
        self,
        input_dim: int,
        channels: int = 512,
        embed_dim: int = 192,
        dilations: Tuple[int, ...] = (2, 3, 4),
        scale: int = 8,
        pooled_channels: int = 1536,
        attention_channels: int = 256,
        unbiased_context_std: bool = False,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.conv_in = nn.Conv1d(input_dim, channels, kernel_size=5, padding=2)
        self.bn_in = nn.BatchNorm1d(channels)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel_size=3, dilation=d, scale=scale) for d in dilations
        )
        self.conv_cat = nn.Conv1d(len(dilations) * channels, pooled_channels, kernel_size=1)
        self.pool = AttentiveStatsPool(pooled_channels, attention_channels, unbiased_context_std)
        self.bn_pool = nn.BatchNorm1d(2 * pooled_channels)
        self.fc = nn.Linear(2 * pooled_channels, embed_dim)
        self.bn_embed = nn.BatchNorm1d(embed_dim)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """:param mask: ``[B, T]`` valid frames (None: all)."""
        if mask is None:
            mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
        x = self.bn_in(torch.relu(self.conv_in(x * mask[:, None, :].to(x.dtype))))
        block_input, outputs = x, []
        for block in self.blocks:
            outputs.append(block(block_input, mask))
            block_input = block_input + outputs[-1]  # dense sums: x, x + x1, x + x1 + x2
        x = torch.relu(self.conv_cat(torch.cat(outputs, dim=1)))
        return self.bn_embed(self.fc(self.bn_pool(self.pool(x, mask))))
