"""The macro-architecture pieces: mixer block, patch merging, stage."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmengine.model import BaseModule

from ..layers.dense import FFN, Linear, use_fast_linears
from ..checks import check_bool, check_cfg, check_int, check_positive, check_rate
from ..norms import is_channels_first_norm


def build_cl_norm(norm_cfg: dict, channels: int) -> Tuple[nn.Module, bool]:
    """Build a norm for channels-last tensors: returns (module, channels_first_flag)."""
    layer = build_norm_layer(norm_cfg, channels)[1]
    return layer, is_channels_first_norm(layer)


def apply_cl_norm(norm: nn.Module, channels_first: bool, x: torch.Tensor) -> torch.Tensor:
    """Run ``norm`` on the (B, H, W, C) tensor ``x``."""
    if channels_first:
        return norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return norm(x)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation on (B, H, W, C) (Table 15): C -> C/ratio -> C, sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 16) -> None:
        super().__init__()
        hidden = max(int(channels // ratio), 8)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean(dim=(1, 2), keepdim=True))))
        return x * gate.sigmoid()


class DepthwiseResidual(nn.Module):
    """The extra k x k depth-wise conv with a residual before the FFN (Table 6), (B, H, W, C).

    ``norm_first=True``: ``x + DW(BN(x))``, the "neighbor-window connection" of Shuffle
    Transformer (its ``x + local(norm2(x))``), the form the paper follows.  ``norm_first=False``
    is a variant, ``x + BN(DW(x))`` (this project's first form, not the paper's).  The children
    are declared in the order they run, so ``mmcv.cnn.fuse_conv_bn`` folds the BN only in the
    variant, where it follows the conv.
    """

    def __init__(self, channels: int, kernel_size: int = 3, norm_cfg: dict = dict(type='BN'),
                 norm_first: bool = True) -> None:
        super().__init__()
        self.norm_first = norm_first
        if norm_first:
            self.norm = build_norm_layer(norm_cfg, channels)[1]
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2,
                              groups=channels)
        if not norm_first:
            self.norm = build_norm_layer(norm_cfg, channels)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 3, 1, 2)
        y = self.conv(self.norm(y)) if self.norm_first else self.norm(self.conv(y))
        return x + y.permute(0, 2, 3, 1)


class MixerBlock(BaseModule):
    """``x + mixer(norm1(x))`` then ``x + FFN(norm2(x))`` on (B, H, W, C).

    With ``norm1_cfg=None`` and BN in ``norm2_cfg`` this is the official DWNet block
    (``x + DWBlock(x)``, ``x + Mlp(BN(x))``); with LN in both it is the Swin block.

    Args:
        embed_dims (int): C.
        mixer (nn.Module): the spatial mixer, (B, H, W, C) -> (B, H, W, C).
        mlp_ratio (float): FFN hidden ratio. Default: 4.
        drop_rate (float): dropout in the FFN. Default: 0.
        drop_path (float): stochastic depth of both residual branches. Default: 0.
        norm1_cfg (dict | None): norm before the mixer (None: no norm).
        norm2_cfg (dict): norm before the FFN.
        act_cfg (dict): FFN activation. Default: GELU.
        se_ratio (int | None): squeeze-and-excitation after the mixer (Table 15).
        ffn_dwconv_kernel (int | None): extra depth-wise conv before the FFN (Table 6).
        ffn_dwconv_norm_first (bool): that conv's form: True ``x + DW(BN(x))`` (Shuffle
            Transformer, the paper), False the variant ``x + BN(DW(x))``. Default: True.
        with_cp (bool): gradient checkpointing. Default: False.
    """

    def __init__(self, embed_dims: int, mixer: nn.Module, mlp_ratio: float = 4.,
                 drop_rate: float = 0., drop_path: float = 0., norm1_cfg: Optional[dict] = None,
                 norm2_cfg: dict = dict(type='BN'), act_cfg: dict = dict(type='GELU'),
                 se_ratio: Optional[float] = None, ffn_dwconv_kernel: Optional[int] = None,
                 with_cp: bool = False, init_cfg: Optional[Union[dict, List[dict]]] = None,
                 ffn_dwconv_norm_first: bool = True) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        check_int('embed_dims', embed_dims, owner=owner)
        if not isinstance(mixer, nn.Module):
            raise TypeError(f'{owner}: mixer must be a built nn.Module (see build_mixer), got '
                            f'{mixer!r}')
        check_positive('mlp_ratio', mlp_ratio, owner=owner)
        check_rate('drop_rate', drop_rate, owner=owner)
        check_rate('drop_path', drop_path, owner=owner,
                   why=' (1 drops the residual branches and gives NaN in training)')
        check_positive('se_ratio', se_ratio, owner=owner, allow_none=True)
        if ffn_dwconv_kernel is not None:  # even kernels would change the map size
            check_int('ffn_dwconv_kernel', ffn_dwconv_kernel, odd=True, owner=owner)
        check_bool('with_cp', with_cp, owner=owner)
        check_cfg('norm1_cfg', norm1_cfg, owner=owner, allow_none=True)
        check_cfg('norm2_cfg', norm2_cfg, owner=owner)
        check_cfg('act_cfg', act_cfg, owner=owner)
        self.with_cp = with_cp
        if norm1_cfg is not None:
            self.norm1, self._norm1_cf = build_cl_norm(norm1_cfg, embed_dims)
        else:
            self.norm1 = None
        # the dense layers' CPU inference fast path for any mixer's plain nn.Linear layers
        self.mixer = use_fast_linears(mixer)
        self.se = use_fast_linears(SqueezeExcite(embed_dims, se_ratio)) if se_ratio else None
        self.ffn_dwconv = DepthwiseResidual(embed_dims, ffn_dwconv_kernel,
                                            norm_first=ffn_dwconv_norm_first) \
            if ffn_dwconv_kernel else None
        self.norm2, self._norm2_cf = build_cl_norm(norm2_cfg, embed_dims)
        self.ffn = FFN(embed_dims, int(embed_dims * mlp_ratio), act_cfg=act_cfg,
                       ffn_drop=drop_rate)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _forward(self, x):
        y = x if self.norm1 is None else apply_cl_norm(self.norm1, self._norm1_cf, x)
        y = self.mixer(y)
        if self.se is not None:
            y = self.se(y)
        x = x + self.drop_path(y)
        if self.ffn_dwconv is not None:
            x = self.ffn_dwconv(x)
        out = self.ffn.fused_residual(x, self.norm2)  # CPU inference: same result, fused
        if out is None:
            out = x + self.drop_path(self.ffn(apply_cl_norm(self.norm2, self._norm2_cf, x)))
        return out

    def prepare_for_inference(self) -> None:
        """Fold the pre-FFN norm into the FFN now (see
        :func:`mmdwnet.models.layers.prepare_for_inference`)."""
        self.ffn.folded_fc1(self.norm2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class PatchMerging(nn.Module):
    """2x2 patch merging in the official order, zero-padding odd sizes (bottom/right).

    ``cat(x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2])`` -> norm(4C) ->
    Linear(4C, 2C, bias=False).

    Shape:
        (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).
    """

    def __init__(self, in_channels: int, out_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='LN')) -> None:
        super().__init__()
        check_int('in_channels', in_channels, owner=type(self).__name__)
        out_channels = 2 * in_channels if out_channels is None else out_channels
        check_int('out_channels', out_channels, owner=type(self).__name__)
        self.norm = build_norm_layer(norm_cfg, 4 * in_channels)[1]
        self.reduction = Linear(4 * in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class MixerStage(nn.Module):
    """``blocks`` (a ModuleList of :class:`MixerBlock`) then an optional ``downsample``."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C), before the downsample."""
        for block in self.blocks:
            x = block(x)
        return x
