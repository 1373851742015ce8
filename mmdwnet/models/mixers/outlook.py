"""VOLO's outlook attention (Yuan et al. 2021) as an mmdwnet mixer (the paper's Table 13)."""
import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import divisible_or_raise
from .base import SpatialMixer, register_mixer

__all__ = ['OutlookAttention']


@register_mixer
class OutlookAttention(SpatialMixer):
    """VOLO's outlook attention as an mmdwnet mixer, (B, H, W, C) -> (B, H, W, C).

    The k x k window around every ``stride``-th position is aggregated with weights predicted
    from that position alone: a linear layer on the (average-pooled) input gives, per head,
    a (k*k, k*k) matrix, softmax over its last axis; the aggregated windows are folded back
    (overlaps summed), then projected.

    Args:
        embed_dims (int): C.
        num_heads (int): heads; divides C.
        kernel_size (int): window side k. Default: 3.
        stride (int): window stride (the weights come from a ``stride`` x ``stride`` average
            pool). Default: 2 (VOLO's setting).
        qkv_bias (bool): bias of the value projection. Default: False.
        attn_drop, proj_drop (float): dropout rates. Default: 0.
        stage (int | None): for error messages.
    """

    def __init__(self, embed_dims: int, num_heads: int, kernel_size: int = 3, stride: int = 2,
                 qkv_bias: bool = False, attn_drop: float = 0., proj_drop: float = 0.,
                 stage: Optional[int] = None) -> None:
        super().__init__()
        divisible_or_raise('OutlookAttention: num_heads', embed_dims, num_heads, stage)
        if kernel_size % 2 == 0:
            raise ValueError(f'OutlookAttention kernel_size must be odd, got {kernel_size}')
        self.embed_dims, self.num_heads = embed_dims, num_heads
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        self.scale = (embed_dims // num_heads)**-0.5
        self.v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.attn = nn.Linear(embed_dims, kernel_size**4 * num_heads)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pool = nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, heads, oh*ow, k*k, k*k) window weights (oh = ceil(H/stride))."""
        b, h, w, _ = x.shape
        k = self.kernel_size
        oh, ow = math.ceil(h / self.stride), math.ceil(w / self.stride)
        attn = self.attn(self.pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        attn = attn.reshape(b, oh * ow, self.num_heads, k * k, k * k).permute(0, 2, 1, 3, 4)
        return self.attn_drop((attn * self.scale).softmax(dim=-1))

    def aggregate(self, v: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) values aggregated with ``attn`` (from :meth:`attention_weights`):
        each window's k*k values mixed by its weights, windows folded back (overlaps summed);
        (B, C, H, W)."""
        b, c, h, w = v.shape
        k, heads = self.kernel_size, self.num_heads
        windows = attn.shape[2]
        v = F.unfold(v, k, padding=self.padding, stride=self.stride)  # B, C*k*k, oh*ow
        v = v.reshape(b, heads, c // heads, k * k, windows).permute(0, 1, 4, 3, 2)
        out = (attn @ v).permute(0, 1, 4, 3, 2).reshape(b, c * k * k, windows)
        return F.fold(out, (h, w), k, padding=self.padding, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        out = self.aggregate(self.v(x).permute(0, 3, 1, 2), self.attention_weights(x))
        return self.proj_drop(self.proj(out.permute(0, 2, 3, 1)))

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Analysis hook (:meth:`SpatialMixer.aggregation`): the outlook aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C).

        Returns:
            tuple[Tensor, Callable]: the values ``self.v(x)`` (1, C, H, W) and the aggregation
            (N, C, H, W) -> (N, C, H, W) with the window weights of ``x`` held fixed.
        """
        attn = self.attention_weights(x).detach()
        return self.v(x).permute(0, 3, 1, 2), lambda v: self.aggregate(v, attn.expand(
            v.shape[0], *attn.shape[1:]))

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}')
