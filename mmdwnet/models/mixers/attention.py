"""Local attention mixers and the static local MLP.

* :class:`ShiftedWindowAttention` -- Swin's (shifted) window multi-head self-attention.
* :class:`SlidingWindowAttention` -- every position attends to its own k x k neighbourhood.
* :class:`LocalMLP` -- Swin without query/key: static per-window connection weights.
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmdwnet.ops import export, local_aggregate, local_correlate
from ..checks import check_bool, check_int, check_pair, check_rate, divisible_or_raise
from ..layers.resize import ResizeError, resize_kernel, resize_position_table
from .base import SpatialMixer, register_mixer
from .window import WindowGeometry, relative_position_index


class _WindowMixerBase(SpatialMixer):
    """Shared arguments of window mixers.

    Args:
        embed_dims (int): C.
        num_heads (int): heads, which are the weight groups: the C / num_heads channels of a
            head share one aggregation weight; divides C.
        window_size (int): window side w.
        shift (bool): shift windows by w // 2 (odd blocks of a stage).
        pad_to_window (bool): detection/segmentation behaviour for small maps
            (see :class:`WindowGeometry`).
        stage (int | None): for error messages.
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int = 7, shift: bool = False,
                 pad_to_window: bool = False, stage: Optional[int] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        check_int('embed_dims', embed_dims, owner=owner, stage=stage)
        check_int('window_size', window_size, owner=owner, stage=stage)
        check_bool('shift', shift, owner=owner)
        check_bool('pad_to_window', pad_to_window, owner=owner)
        divisible_or_raise(f'{type(self).__name__}: num_heads', embed_dims, num_heads, stage,
                           hint=f'num_heads must divide the {embed_dims} channels of the stage.')
        self.embed_dims, self.num_heads, self.window_size = embed_dims, num_heads, window_size
        self.shift_size = window_size // 2 if shift else 0
        self.pad_to_window, self.stage = pad_to_window, stage
        self.register_buffer('relative_position_index', relative_position_index(window_size),
                             persistent=False)

    def geometry(self, x: torch.Tensor) -> WindowGeometry:
        return WindowGeometry(x.shape[1], x.shape[2], self.window_size, self.shift_size,
                              self.pad_to_window, self.stage)

    def window_aggregation(self, geo: WindowGeometry, weight: torch.Tensor, values: torch.Tensor,
                           pad_value: torch.Tensor) -> torch.Tensor:
        """Analysis hook helper: (N, C, H, W) values -> (N, C, H, W) aggregated with the fixed
        per-window ``weight`` (nW or 1, groups, w*w, w*w); padded tokens take ``pad_value`` (C,),
        the value a zero token gets, as in ``forward``."""
        win = geo.partition(values.permute(0, 2, 3, 1) - pad_value) + pad_value
        bw, n, c = win.shape
        groups = weight.shape[1]
        win = win.view(-1, geo.num_windows, n, groups, c // groups).permute(0, 1, 3, 2, 4)
        out = (weight @ win).permute(0, 1, 3, 2, 4).reshape(bw, n, c)
        return geo.reverse(out).permute(0, 3, 1, 2)

    def relative_bias(self, table: torch.Tensor) -> torch.Tensor:
        """Table ((2w-1)^2, heads) -> (heads, w*w, w*w)."""
        n = self.window_size**2
        return table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook (:meth:`SpatialMixer.resize_entry`): the ((2w-1)^2, heads) relative
        position table is interpolated bicubically on its (2w-1) x (2w-1) grid (official
        Swin), never rescaled."""
        if name == 'relative_position_bias_table':
            return resize_position_table(value, round(shape[0]**0.5), 'bicubic')
        return super().resize_entry(name, value, shape, mode, scale)

    def extra_repr(self):
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'window_size={self.window_size}, shift_size={self.shift_size}')


@register_mixer
class ShiftedWindowAttention(_WindowMixerBase):
    """Swin (shifted) window attention with relative position bias, any input size.

    Maps that do not divide into windows are zero-padded at the bottom/right (after the block's
    pre-norm, as in Swin) and cropped back; shifted windows use the cyclic shift with masks.

    Args:
        qkv_bias (bool): bias in the qkv projection. Default: True.
        attn_drop (float): dropout on attention weights. Default: 0.
        proj_drop (float): dropout after the output projection. Default: 0.
        Others: see :class:`_WindowMixerBase`.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int = 7, shift: bool = False,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 pad_to_window: bool = False, stage: Optional[int] = None) -> None:
        super().__init__(embed_dims, num_heads, window_size, shift, pad_to_window, stage)
        check_bool('qkv_bias', qkv_bias, owner=type(self).__name__)
        check_rate('attn_drop', attn_drop, owner=type(self).__name__)
        check_rate('proj_drop', proj_drop, owner=type(self).__name__)
        self.scale = (embed_dims // num_heads)**-0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1)**2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_weights(self, windows: torch.Tensor, mask: Optional[torch.Tensor]
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B*nW, N, C) windows -> ((B*nW, heads, N, N) weights, (B*nW, heads, N, d) values)."""
        bw, n, c = windows.shape
        qkv = self.qkv(windows).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.relative_bias(self.relative_position_bias_table).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n).masked_fill(
                mask[None, :, None], float('-inf')).view(bw, self.num_heads, n, n)
        return self.attn_drop(attn.softmax(dim=-1)), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geo = self.geometry(x)
        windows = geo.partition(x)
        attn, v = self.attention_weights(windows, geo.mask(x.device))
        out = (attn @ v).transpose(1, 2).reshape(windows.shape)
        return geo.reverse(self.proj_drop(self.proj(out)))

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Analysis hook (:mod:`mmdwnet.analysis.connectivity`): the value aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C).

        Returns:
            tuple[Tensor, Callable]: the values (1, C, H, W) and the aggregation
            (N, C, H, W) -> (N, C, H, W) with the attention weights of ``x`` held fixed
            (``self.proj(out.permute(0, 2, 3, 1))`` is ``forward(x)``).
        """
        geo = self.geometry(x)
        attn, _ = self.attention_weights(geo.partition(x), geo.mask(x.device))
        c = self.embed_dims
        bias = self.qkv.bias[2 * c:] if self.qkv.bias is not None else x.new_zeros(c)
        values = F.linear(x, self.qkv.weight[2 * c:], bias).permute(0, 3, 1, 2)
        attn = attn.detach()
        return values, lambda v: self.window_aggregation(geo, attn, v, bias.detach())


@register_mixer
class LocalMLP(_WindowMixerBase):
    """Static local MLP: window aggregation with learned, input-independent weights.

    Swin's window attention without query and key projections: within every (shifted) window
    the tokens are mixed by a static matrix ``W + B`` (``W`` a parameter, ``B`` the relative
    position bias), per head, applied to ``v = Linear(x)``, followed by the output projection.
    No softmax: the weights do not depend on the input.

    Args:
        share_channels (bool): one weight matrix per head (channels of a head share it).  False
            gives one per channel (Table 4 "SP only"). Default: True.
        share_positions (bool): share the matrices across windows.  False (the paper's Table 2
            Local MLP, "SC only") gives one per window and needs the input resolution.
            Default: True.
        input_resolution (tuple[int, int] | None): (H, W), given by the backbone.
        Others: see :class:`_WindowMixerBase`.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, num_heads: int, window_size: int = 7, shift: bool = False,
                 share_channels: bool = True, share_positions: bool = True,
                 input_resolution: Optional[Tuple[int, int]] = None, qkv_bias: bool = True,
                 proj_drop: float = 0., pad_to_window: bool = False,
                 stage: Optional[int] = None) -> None:
        super().__init__(embed_dims, num_heads, window_size, shift, pad_to_window, stage)
        for name, flag in (('share_channels', share_channels),
                           ('share_positions', share_positions), ('qkv_bias', qkv_bias)):
            check_bool(name, flag, owner='LocalMLP')
        check_rate('proj_drop', proj_drop, owner='LocalMLP')
        self.share_channels, self.share_positions = share_channels, share_positions
        self.weight_heads = num_heads if share_channels else embed_dims
        n = window_size**2
        num_windows = 1
        if not share_positions:
            if input_resolution is None:
                raise ValueError('LocalMLP(share_positions=False) needs input_resolution (set '
                                 'img_size on the backbone)')
            self.input_resolution = check_pair('input_resolution', input_resolution,
                                               owner='LocalMLP')
            num_windows = WindowGeometry(*self.input_resolution, window_size, self.shift_size,
                                         pad_to_window, stage).num_windows
        self.local_weight = nn.Parameter(torch.zeros(num_windows, self.weight_heads, n, n))
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1)**2, self.weight_heads))
        nn.init.trunc_normal_(self.local_weight, std=0.02)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.v = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook: the position table as Swin's; the per-window ``local_weight`` cannot
        be resized."""
        if name == 'local_weight':
            raise ResizeError('LocalMLP.local_weight holds one weight matrix per window position '
                              'and cannot be resized to another window size')
        return super().resize_entry(name, value, shape, mode, scale)

    def aggregation_weights(self, geo: WindowGeometry,
                            device: Optional[torch.device] = None) -> torch.Tensor:
        """(nW or 1, heads', N, N) static weights, masked for shifted windows."""
        weight = self.local_weight + self.relative_bias(self.relative_position_bias_table)[None]
        mask = geo.mask(device)
        if mask is not None:
            weight = weight.masked_fill(mask[:, None], 0.)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.share_positions and tuple(x.shape[1:3]) != self.input_resolution:
            raise ValueError(f'LocalMLP(share_positions=False) was built for '
                             f'{self.input_resolution} maps and cannot take '
                             f'{tuple(x.shape[1:3])}: its weights are per window')
        geo = self.geometry(x)
        windows = self.v(geo.partition(x))
        bw, n, c = windows.shape
        heads = self.weight_heads
        v = windows.view(-1, geo.num_windows, n, heads, c // heads).permute(0, 1, 3, 2, 4)
        weight = self.aggregation_weights(geo, x.device)
        if weight.shape[0] == 1:
            weight = weight.squeeze(0)
        out = (weight @ v).permute(0, 1, 3, 2, 4).reshape(bw, n, c)
        return geo.reverse(self.proj_drop(self.proj(out)))

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Analysis hook (:mod:`mmdwnet.analysis.connectivity`): the window aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C).

        Returns:
            tuple[Tensor, Callable]: the values ``self.v(x)`` as (1, C, H, W) and the static
            aggregation (N, C, H, W) -> (N, C, H, W).
        """
        geo = self.geometry(x)
        weight = self.aggregation_weights(geo, x.device).detach()
        bias = self.v.bias.detach() if self.v.bias is not None else x.new_zeros(x.shape[-1])
        values = self.v(x).permute(0, 3, 1, 2)
        return values, lambda v: self.window_aggregation(geo, weight, v, bias)


def outside_neighbours(height: int, width: int, kernel_size: int,
                       device: Optional[torch.device] = None) -> torch.Tensor:
    """Which k x k neighbours of each position fall outside an H x W map.

    ``out[0, 0, i, j, y, x]`` is True when position ``(y + i - k // 2, x + j - k // 2)`` lies
    outside the map: the same as ``local_correlate(ones, ones, k, 1) == 0``, built from two
    index comparisons (a few standard ops, also in an ONNX graph, instead of one k x k
    correlation of a map of ones).

    Returns:
        Tensor: bool (1, 1, k, k, H, W).
    """
    r = kernel_size // 2
    offsets = torch.arange(kernel_size, device=device) - r

    def inside(n):  # (k, n): offset i from position p stays in [0, n)
        p = torch.arange(n, device=device)[None, :] + offsets[:, None]
        return (p >= 0) & (p < n)

    rows, cols = inside(height), inside(width)
    return ~(rows[:, None, :, None] & cols[None, :, None, :])[None, None]


@register_mixer
class SlidingWindowAttention(SpatialMixer):
    """Sliding-window (neighbourhood) attention: each position attends to its k x k neighbours.

    Logits ``q . k / sqrt(d)`` plus a learned bias per head and relative offset, softmax over
    the neighbourhood (positions outside the map are masked), weighted sum of values, output
    projection.  Built on :func:`mmdwnet.ops.local_correlate` / ``local_aggregate``: the
    neighbourhood is never unfolded in memory.

    Args:
        embed_dims (int): C.
        num_heads (int): heads; divides C.
        kernel_size (int): odd k. Default: 7.
        qkv_bias (bool): Default: True.
        stage (int | None): for error messages.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, num_heads: int, kernel_size: int = 7,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0.,
                 stage: Optional[int] = None) -> None:
        super().__init__()
        owner = 'SlidingWindowAttention'
        check_int('embed_dims', embed_dims, owner=owner, stage=stage)
        divisible_or_raise('SlidingWindowAttention: num_heads', embed_dims, num_heads, stage)
        # odd: the neighbourhood is centred on its position
        check_int('kernel_size', kernel_size, odd=True, owner=owner, stage=stage)
        check_bool('qkv_bias', qkv_bias, owner=owner)
        check_rate('attn_drop', attn_drop, owner=owner)
        check_rate('proj_drop', proj_drop, owner=owner)
        self.embed_dims, self.num_heads, self.kernel_size = embed_dims, num_heads, kernel_size
        self.scale = (embed_dims // num_heads)**-0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros(num_heads, kernel_size**2))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_weights(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) -> ((B, heads, k, k, H, W) weights, (B, C, H, W) values)."""
        b, h, w, c = x.shape
        k = self.kernel_size
        q, key, v = self.qkv(x).permute(0, 3, 1, 2).reshape(b, 3, c, h, w).unbind(1)
        logits = local_correlate(q * self.scale, key, k, self.num_heads)
        bias = self.relative_position_bias_table.view(1, self.num_heads, k, k, 1, 1)
        logits = (logits + bias).masked_fill(outside_neighbours(h, w, k, x.device),
                                             float('-inf'))
        attn = export.softmax(logits.flatten(2, 3), dim=2).view_as(logits)
        return self.attn_drop(attn), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, v = self.attention_weights(x)
        out = local_aggregate(v, attn).permute(0, 2, 3, 1)
        return self.proj_drop(self.proj(out))

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Analysis hook (:mod:`mmdwnet.analysis.connectivity`): the value aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C).

        Returns:
            tuple[Tensor, Callable]: the values (1, C, H, W) and the aggregation
            (N, C, H, W) -> (N, C, H, W) with the attention weights of ``x`` held fixed.
        """
        attn, v = self.attention_weights(x)
        attn = attn.detach()
        return v, lambda values: local_aggregate(values, attn)

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook (:meth:`SpatialMixer.resize_entry`): the (heads, k*k) position bias is
        interpolated bicubically on its k x k grid, never rescaled."""
        if name == 'relative_position_bias_table':
            side = round(value.shape[1]**0.5)
            return resize_kernel(value.reshape(-1, side, side), round(shape[1]**0.5), 'bicubic',
                                 'none').reshape(shape)
        return super().resize_entry(name, value, shape, mode, scale)

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'kernel_size={self.kernel_size}')
