"""Depth-wise convolution mixers: static (DW), homogeneous dynamic (D-DW), inhomogeneous (I-D-DW).

All three share the block of the paper's Table 8, which only differs in its spatial aggregation::

    1x1 conv -> BN -> ReLU -> k x k aggregation -> BN -> ReLU -> 1x1 conv -> BN

The children are declared in that order so that ``mmcv.cnn.fuse_conv_bn`` folds every
conv -> BN pair (``proj_in``/``norm_in``, a static ``aggregate``/``norm_mid``,
``proj_out``/``norm_out`` and the kernel generators' ``reduce``/``norm``).
"""
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer

from mmdwnet.ops import (dynamic_depthwise_conv2d, local_aggregate,
                         local_aggregate_pointwise)
from ..checks import (check_batch_statistics, check_bool, check_cfg, check_int, check_pair,
                      divisible_or_raise)
from ..layers.resize import ResizeError, resize_generator_rows, resize_kernel
from .base import SpatialMixer, register_mixer


def same_padding(kernel_size):
    """(left, right, top, bottom) zero padding that keeps H x W for a k x k kernel at stride 1.

    ``(k - 1) // 2`` before and ``k // 2`` after: an even k gets its extra row at the bottom and
    its extra column at the right, as PyTorch's ``padding='same'`` (odd k: ``k // 2`` each side).
    """
    before, after = (kernel_size - 1) // 2, kernel_size // 2
    return (before, after, before, after)


class SameDepthwiseConv2d(nn.Conv2d):
    """Depth-wise k x k conv with a same-size output for any k, odd or even.

    Odd k pads ``k // 2`` on each side inside the conv; even k zero-pads with
    :func:`same_padding` first (the extra row / column at the bottom / right), then convolves
    without padding; equal to ``nn.Conv2d(..., padding='same')``.  A subclass of ``nn.Conv2d``
    with the same parameters, so conv-BN fusion and checkpoints are unchanged.

    CPU float32 training (autograd recording; not while TorchScript-tracing or exporting to ONNX)
    runs it as :func:`mmdwnet.ops.dynamic_depthwise_conv2d` with the one kernel expanded over
    the batch (also under ``torch.compile``): the compiled channels-last kernels and their
    backward, the same result within float32 rounding; forward + backward 3-4.8x faster than
    aten's depth-wise conv at the Tiny stages' sizes (docs/ops.md, "The backward passes,
    compiled").  Inference keeps the conv (oneDNN, and ``fuse_conv_bn`` folds the BN after it).

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__(channels, channels, kernel_size, groups=channels, bias=bias,
                         padding=kernel_size // 2 if kernel_size % 2 else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if _trains_on_cpu(x, self.weight):
            kernels = self.weight.view(1, self.out_channels, k, k).expand(x.shape[0], -1, -1, -1)
            return dynamic_depthwise_conv2d(x, kernels, self.bias)
        if k % 2 == 0:
            x = F.pad(x, same_padding(k))
        return super().forward(x)


def _trains_on_cpu(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a static depth-wise conv on ``x`` is being trained on CPU float32 outside
    TorchScript tracing / scripting and ONNX export (which keep the conv).  ``torch.compile``
    takes the op too (a registered custom op with its fake and autograd): compiled and eager
    training then run the same gradients."""
    return (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
            and x.device.type == 'cpu' and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not torch.onnx.is_in_onnx_export())


class SharedDepthwiseConv2d(nn.Module):
    """Static k x k aggregation with the sharing options of the paper's Table 4.

    Args:
        channels (int): C.
        kernel_size (int): k, odd or even.
        groups (int): G weight groups; channel ``c`` uses kernel ``c // (C/G)``.  ``G == C`` is an
            ordinary depth-wise conv (no sharing across channels).
        input_resolution (tuple[int, int] | None): (H, W); required when ``share_positions`` is
            False, since a locally connected layer has one kernel per position.
        share_positions (bool): False gives a locally connected layer (Table 4, "SC only").

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int,
                 input_resolution: Optional[Tuple[int, int]] = None,
                 share_positions: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.channels, self.kernel_size, self.groups = channels, kernel_size, groups
        self.share_positions = share_positions
        if share_positions:
            self.weight = nn.Parameter(torch.empty(groups, 1, kernel_size, kernel_size))
        else:
            if input_resolution is None:
                raise ValueError('share_positions=False (a locally connected layer) needs the '
                                 'input resolution: set img_size on the backbone')
            self.input_resolution = tuple(input_resolution)
            self.weight = nn.Parameter(
                torch.empty(1, groups, kernel_size, kernel_size, *self.input_resolution))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.share_positions:
            weight = self.weight.repeat_interleave(self.channels // self.groups, dim=0)
            if self.kernel_size % 2 == 0:
                return F.conv2d(F.pad(x, same_padding(self.kernel_size)), weight, self.bias,
                                groups=self.channels)
            return F.conv2d(x, weight, self.bias, padding=self.kernel_size // 2,
                            groups=self.channels)
        if tuple(x.shape[-2:]) != self.input_resolution:
            raise ValueError(f'this locally connected layer (share_positions=False) was built for '
                             f'{self.input_resolution} inputs and cannot take {tuple(x.shape[-2:])}; '
                             'rebuild it with a matching img_size')
        out = local_aggregate(x, self.weight)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook (see :meth:`SpatialMixer.resize_entry`): shared kernels (G, 1, k, k)
        are interpolated; position-specific ones cannot be resized."""
        if not self.share_positions:
            raise ResizeError('position-specific kernels (share_positions=False) cannot be '
                              'resized')
        if name != 'weight':
            raise ResizeError(f'no resizing rule for SharedDepthwiseConv2d.{name}')
        return resize_kernel(value, shape[-1], mode, scale)

    def extra_repr(self):
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, '
                f'share_positions={self.share_positions}')


class _GeneratedKernels(nn.Module):
    """What the two dynamic aggregations share: a kernel generator whose last 1x1 conv
    (``expand``) outputs ``generator_groups`` k x k kernels per position, rows ordered
    ``GROUP * k*k + i * k + j``."""

    kernel_size: int

    @property
    def generator_groups(self) -> int:
        """Kernels generated per position (per image for D-DW)."""
        raise NotImplementedError

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook (see :meth:`SpatialMixer.resize_entry`): the kernel generator's last
        1x1 conv (``expand``), whose output rows are ``GROUP * k*k + i * k + j``, is regrouped
        into k x k grids and interpolated, so the generated kernels are the interpolated ones."""
        if name not in ('expand.weight', 'expand.bias'):
            raise ResizeError(f'no resizing rule for {type(self).__name__}.{name}')
        return resize_generator_rows(value, self.generator_groups, self.kernel_size, mode, scale)


class DynamicDWAggregate(_GeneratedKernels):
    """The aggregation of :class:`DynamicDWConv` (D-DW): a k x k kernel per channel per image.

    Not a mixer itself (no 1x1 projections, (N, C, H, W) layout); formerly ``DynamicDWConv2d``.

    Kernel generator (official form): global average pool -> 1x1 conv C->C/r (no bias) -> BN ->
    ReLU -> 1x1 conv C/r -> C*k*k (bias); plus a learnable bias of size C.  The whole batch runs
    as one grouped convolution (batch folded into channels), no per-image loop.

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int, reduction: int = 4,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.norm = build_norm_layer(norm_cfg, channels // reduction)[1]
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(channels // reduction, channels * kernel_size**2, 1)
        self.bias = nn.Parameter(torch.zeros(channels))

    def generate_weight(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> kernels (N*C, 1, k, k)."""
        k = self.kernel_size
        # The 1x1 convs on the pooled (N, C, 1, 1) vector run as matrix products (a CPU conv
        # would re-pack the large expand weight on every call); same result.
        z = F.linear(self.pool(x).flatten(1), self.reduce.weight.flatten(1), self.reduce.bias)
        check_batch_statistics(self.norm, z, 'DynamicDWConv2d (the D-DW kernel generator)')
        z = self.act(self.norm(z[:, :, None, None])).flatten(1)
        return F.linear(z, self.expand.weight.flatten(1), self.expand.bias).view(-1, 1, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k = self.kernel_size
        if n == 0:  # an empty batch: the grouped conv would have 0 groups
            return x + self.bias.view(1, -1, 1, 1)
        return dynamic_depthwise_conv2d(x, self.generate_weight(x).view(n, c, k, k), self.bias)

    def frozen(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Analysis hook: this aggregation with the kernels generated from one image ``x``
        (1, C, H, W) held fixed, as a function (N, C, H, W) -> (N, C, H, W)."""
        weight = self.generate_weight(x).detach()
        return lambda v: F.conv2d(F.pad(v, same_padding(self.kernel_size)), weight, self.bias,
                                  groups=self.channels)

    @property
    def generator_groups(self) -> int:
        """Kernels generated per image position: one per channel."""
        return self.channels


class IDynamicDWAggregate(_GeneratedKernels):
    """The aggregation of :class:`IDynamicDWConv` (I-D-DW): a k x k kernel per position and
    weight group.  Not a mixer itself; formerly ``IDynamicDWConv2d``.

    Kernel generator (official form): 1x1 conv C->C/r (bias) -> BN -> ReLU -> 1x1 conv
    C/r -> k*k*G; the aggregation is :func:`mmdwnet.ops.local_aggregate` (no bias).

    Args:
        channels (int): C.
        kernel_size (int): k, odd or even.
        group_channels (int): channels per weight group, which share one weight (the official
            ``inhomo_heads``); G = C / group_channels weight groups.

    Shape:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int, group_channels: int, reduction: int = 4,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        self.groups = channels // group_channels
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.norm = build_norm_layer(norm_cfg, channels // reduction)[1]
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(channels // reduction, kernel_size**2 * self.groups, 1)

    def generate_weight(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> weights (N, G, k, k, H, W)."""
        n, _, h, w = x.shape
        k = self.kernel_size
        return self.expand(self.act(self.norm(self.reduce(x)))).view(n, self.groups, k, k, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # = local_aggregate(x, self.generate_weight(x)); the op makes the (N, G*k*k, H, W)
        # kernels a tile at a time, never in full.
        return local_aggregate_pointwise(x, self.act(self.norm(self.reduce(x))),
                                         self.expand.weight, self.expand.bias, self.groups,
                                         self.kernel_size)

    def frozen(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Analysis hook: this aggregation with the weights generated from one image ``x``
        (1, C, H, W) held fixed, as a function (N, C, H, W) -> (N, C, H, W)."""
        weight = self.generate_weight(x).detach()
        return lambda v: local_aggregate(v, weight)

    @property
    def generator_groups(self) -> int:
        """Kernels generated per position: one per weight group."""
        return self.groups


class _PointwiseSpatialPointwise(SpatialMixer):
    """Table 8 block around a spatial aggregation; subclasses build ``aggregate``.

    Args:
        embed_dims (int): C.
        kernel_size (int): k of the aggregation (the official "window_size"); an even k keeps
            the output size with the extra padding row / column at the bottom / right
            (:func:`same_padding`, PyTorch's ``padding='same'``).
        pad_to_window (bool): zero-pad the input at the bottom/right to a multiple of
            ``kernel_size`` and crop after the block, as the official detection/segmentation
            backbone does (this changes border outputs because BN/ReLU run before the
            aggregation).  False is the official classification behaviour.
        norm_cfg (dict): norm of the block (BN in the paper).
        stage (int | None): stage index, used in error messages.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, kernel_size: int = 7, pad_to_window: bool = False,
                 norm_cfg: dict = dict(type='BN'), stage: Optional[int] = None) -> None:
        super().__init__()
        owner = type(self).__name__
        check_int('embed_dims', embed_dims, owner=owner, stage=stage)
        check_int('kernel_size', kernel_size, owner=owner, stage=stage)  # type and sign
        check_bool('pad_to_window', pad_to_window, owner=owner)
        check_cfg('norm_cfg', norm_cfg, owner=owner)
        self.embed_dims, self.kernel_size = embed_dims, kernel_size
        self.pad_to_window = pad_to_window
        self.proj_in = nn.Conv2d(embed_dims, embed_dims, 1, bias=False)
        self.norm_in = build_norm_layer(norm_cfg, embed_dims)[1]
        self.act = nn.ReLU(inplace=True)
        self.aggregate = self.build_aggregate(embed_dims, kernel_size)
        self.norm_mid = build_norm_layer(norm_cfg, embed_dims)[1]
        self.proj_out = nn.Conv2d(embed_dims, embed_dims, 1, bias=False)
        self.norm_out = build_norm_layer(norm_cfg, embed_dims)[1]

    def build_aggregate(self, channels: int, kernel_size: int) -> nn.Module:
        """The k x k aggregation, (N, C, H, W) -> (N, C, H, W); subclasses build it."""
        raise NotImplementedError(f'{type(self).__name__} must implement build_aggregate()')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        _, h, w, _ = x.shape
        if self.pad_to_window:
            k = self.kernel_size
            x = F.pad(x, (0, 0, 0, (k - w % k) % k, 0, (k - h % k) % k))
        x = x.permute(0, 3, 1, 2)  # channels-last memory, NCHW view
        x = self.act(self.norm_in(self.proj_in(x)))
        x = self.act(self.norm_mid(self.aggregate(x)))
        x = self.norm_out(self.proj_out(x)).permute(0, 2, 3, 1)
        return x[:, :h, :w, :] if self.pad_to_window else x

    def aggregation(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """Analysis hook (:meth:`SpatialMixer.aggregation`): the k x k aggregation alone.

        Args:
            x (Tensor): one mixer input (1, H, W, C); ``pad_to_window`` padding is not applied.

        Returns:
            tuple[Tensor, Callable]: the values (1, C, H, W) that reach the aggregation and
            the aggregation (N, C, H, W) -> (N, C, H, W) with the connection weights that ``x``
            induces held fixed (static kernels are the parameters themselves).
        """
        values = self.act(self.norm_in(self.proj_in(x.permute(0, 3, 1, 2))))
        frozen = getattr(self.aggregate, 'frozen', None)
        return values, (frozen(values) if frozen is not None else self.aggregate)

    def resize_entry(self, name: str, value: torch.Tensor, shape: torch.Size,
                     mode: str = 'bicubic', scale: str = 'none') -> torch.Tensor:
        """Resize hook (:meth:`SpatialMixer.resize_entry`): a depth-wise ``aggregate`` conv's
        kernels are interpolated; an aggregation with its own ``resize_entry`` (shared or
        dynamic kernels) resizes its entries."""
        agg = self.aggregate
        if name == 'aggregate.weight' and isinstance(agg, nn.Conv2d) and agg.groups > 1 \
                and tuple(value.shape[:2]) == tuple(shape[:2]):
            return resize_kernel(value, shape[-1], mode, scale)
        if name.startswith('aggregate.') and hasattr(agg, 'resize_entry'):
            return agg.resize_entry(name[len('aggregate.'):], value, shape, mode, scale)
        return super().resize_entry(name, value, shape, mode, scale)

    def extra_repr(self):
        return f'embed_dims={self.embed_dims}, kernel_size={self.kernel_size}'


@register_mixer
class DWConv(_PointwiseSpatialPointwise):
    """Static depth-wise conv mixer (the paper's DW-Conv, Table 8).

    Args:
        embed_dims (int): C.
        kernel_size (int): k, odd or even. Default: 7.
        share_channels (bool): share each kernel across the ``C / num_heads`` channels of a head
            (Table 4 "SC"). Default: False (one kernel per channel).
        share_positions (bool): False makes the aggregation locally connected, one kernel per
            position (Table 4); needs ``input_resolution``. Default: True.
        num_heads (int): the weight groups when ``share_channels`` (the stage's heads).
        input_resolution (tuple[int, int] | None): (H, W), given by the backbone.
        pad_to_window, norm_cfg, stage: see the base class.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, kernel_size: int = 7, share_channels: bool = False,
                 share_positions: bool = True, num_heads: int = 1,
                 input_resolution: Optional[Tuple[int, int]] = None, pad_to_window: bool = False,
                 norm_cfg: dict = dict(type='BN'), stage: Optional[int] = None) -> None:
        check_bool('share_channels', share_channels, owner='DWConv')
        check_bool('share_positions', share_positions, owner='DWConv')
        if input_resolution is not None:
            input_resolution = check_pair('input_resolution', input_resolution, owner='DWConv')
        if share_channels:
            divisible_or_raise('DWConv(share_channels=True): num_heads', embed_dims, num_heads,
                               stage, hint=f'Choose num_heads dividing {embed_dims} channels.')
        self.share_channels, self.share_positions = share_channels, share_positions
        self.num_heads, self.input_resolution = num_heads, input_resolution
        super().__init__(embed_dims, kernel_size, pad_to_window, norm_cfg, stage)

    def build_aggregate(self, channels: int, kernel_size: int) -> nn.Module:
        if not self.share_channels and self.share_positions:
            return SameDepthwiseConv2d(channels, kernel_size)
        if not self.share_positions and self.pad_to_window:
            raise ValueError('DWConv(share_positions=False) has one kernel per position and '
                             'cannot pad to window multiples; set pad_to_window=False')
        groups = self.num_heads if self.share_channels else channels
        return SharedDepthwiseConv2d(channels, kernel_size, groups, self.input_resolution,
                                     self.share_positions)


@register_mixer
class DynamicDWConv(_PointwiseSpatialPointwise):
    """Homogeneous dynamic depth-wise conv mixer (D-DW-Conv): per-image kernels.

    Args:
        embed_dims (int): C (divisible by ``reduction``).
        kernel_size (int): k, odd or even. Default: 7.
        reduction (int): channel reduction of the kernel generator. Default: 4.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, kernel_size: int = 7, reduction: int = 4,
                 pad_to_window: bool = False, norm_cfg: dict = dict(type='BN'),
                 stage: Optional[int] = None) -> None:
        divisible_or_raise('DynamicDWConv: reduction', embed_dims, reduction, stage)
        self.reduction, self.gen_norm_cfg = reduction, norm_cfg
        super().__init__(embed_dims, kernel_size, pad_to_window, norm_cfg, stage)

    def build_aggregate(self, channels: int, kernel_size: int) -> nn.Module:
        return DynamicDWAggregate(channels, kernel_size, self.reduction, self.gen_norm_cfg)


@register_mixer
class IDynamicDWConv(_PointwiseSpatialPointwise):
    """Inhomogeneous dynamic depth-wise conv mixer (I-D-DW-Conv): per-position kernels.

    Args:
        embed_dims (int): C.
        kernel_size (int): k, odd or even. Default: 7.
        group_channels (int | None): channels per weight group (they share one aggregation
            weight; G = C / group_channels weight groups).  None takes
            ``num_heads`` (the official convention: ``inhomo_heads=[3, 6, 12, 24]`` for the tiny
            model, i.e. 32 weight groups in every stage).
        num_heads (int): the stage's head count, given by the backbone.
        reduction (int): channel reduction of the kernel generator. Default: 4.

    Shape:
        (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, embed_dims: int, kernel_size: int = 7,
                 group_channels: Optional[int] = None, num_heads: Optional[int] = None,
                 reduction: int = 4, pad_to_window: bool = False,
                 norm_cfg: dict = dict(type='BN'), stage: Optional[int] = None) -> None:
        group_channels = group_channels if group_channels is not None else num_heads
        if group_channels is None:
            raise ValueError('IDynamicDWConv needs group_channels (or the stage num_heads)')
        divisible_or_raise('IDynamicDWConv: group_channels', embed_dims, group_channels, stage,
                           hint='group_channels is the number of channels sharing one weight.')
        divisible_or_raise('IDynamicDWConv: reduction', embed_dims, reduction, stage)
        self.group_channels, self.reduction, self.gen_norm_cfg = group_channels, reduction, norm_cfg
        super().__init__(embed_dims, kernel_size, pad_to_window, norm_cfg, stage)

    def build_aggregate(self, channels: int, kernel_size: int) -> nn.Module:
        return IDynamicDWAggregate(channels, kernel_size, self.group_channels, self.reduction,
                                self.gen_norm_cfg)


# the former names of the aggregations (kept importable)
DynamicDWConv2d = DynamicDWAggregate
IDynamicDWConv2d = IDynamicDWAggregate
