"""VOLO (Yuan et al. 2021, "VOLO: Vision Outlooker for Visual Recognition") with a swappable
mixer in its outlooker stage, for the paper's Table 13.

Structure of the public VOLO code (sail-sg/volo), VOLO-D1::

    image (B, 3, H, W)
      -> stem: 7x7 conv s2 (64) -> BN -> ReLU -> 2 x [3x3 conv (64) -> BN -> ReLU]
         -> 4x4 conv s4 (192)                                            (B, H/8, W/8, 192)
      -> outlooker stage: 4 x MixerBlock(mixer=OutlookAttention(3x3, stride 2), LN, MLP x3)
      -> 2x2 conv s2 (384)                                               (B, H/16, W/16, 384)
      -> + position embedding (bicubic-resized for other input sizes)
      -> 14 x transformer layer (12 heads, MLP x3)                      (B, N, 384)
      -> [cls token; tokens] -> 2 x class-attention block -> LN
      -> cls token (B, 384) and patch tokens (B, 384, H/16, W/16)

Only the outlooker stage's mixer changes between the Table 13 rows: ``mixer`` is any mmdwnet
mixer config (``OutlookAttention``, ``SlidingWindowAttention``, ``DWConv`` ...).
:class:`VOLOClsHead` is VOLO's classifier: a linear layer on the cls token plus 0.5 x the
maximum over tokens of an auxiliary linear layer on the patch tokens (VOLO's inference rule).
"""
import math
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmcv.cnn.bricks.drop import DropPath
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.models.utils import resize_pos_embed

from mmdwnet.registry import register_model
from ..mixers.builder import build_mixer
from ..mixers.outlook import OutlookAttention  # noqa: F401  (VOLO's mixer; re-exported)
from .blocks import MixerBlock


class ClassAttentionBlock(BaseModule):
    """CaiT's class-attention block as VOLO uses it: only the cls token is updated.

    ``cls = cls + DropPath(CA(norm1([cls; tokens])))``, ``cls = cls + DropPath(MLP(norm2(cls)))``
    with CA the attention of the cls query over all tokens; the patch tokens pass unchanged.

    Shape:
        (B, 1 + N, C) -> (B, 1 + N, C).
    """

    def __init__(self, embed_dims: int, num_heads: int, mlp_ratio: float = 3.,
                 qkv_bias: bool = False, drop_path: float = 0., norm_cfg=dict(type='LN')):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (embed_dims // num_heads)**-0.5
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.kv = nn.Linear(embed_dims, embed_dims * 2, bias=qkv_bias)
        self.q = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = FFN(embed_dims=embed_dims, feedforward_channels=int(embed_dims * mlp_ratio),
                       add_identity=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def class_attention(self, x):
        b, n, c = x.shape
        d = c // self.num_heads
        k, v = self.kv(x).reshape(b, n, 2, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(x[:, :1]).reshape(b, 1, self.num_heads, d).transpose(1, 2)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, 1, c))

    def forward(self, x):
        cls = x[:, :1] + self.drop_path(self.class_attention(self.norm1(x)))
        cls = cls + self.drop_path(self.ffn(self.norm2(cls)))
        return torch.cat([cls, x[:, 1:]], dim=1)


@register_model()
class VOLONet(BaseModule):
    """VOLO backbone whose outlooker stage takes any mmdwnet mixer.

    Args:
        arch (str | dict): ``'d1'`` or a dict with ``stem_channels``, ``outlook_dims``,
            ``outlook_depth``, ``outlook_heads``, ``embed_dims``, ``depth``, ``num_heads``,
            ``ca_depth``, ``mlp_ratio``.
        mixer (dict): mixer of the outlooker blocks; built with the stage's ``embed_dims`` and
            ``num_heads`` (and ``stage=0``). Default: VOLO's 3x3 outlook attention, stride 2.
        img_size (int | tuple): training size; sets the position embedding (H/16 x W/16),
            resized bicubically for other inputs. Default: 224.
        in_channels (int): Default: 3.
        qkv_bias (bool): Default: False (VOLO).
        drop_rate (float): dropout after the position embedding. Default: 0.
        drop_path_rate (float): stochastic depth of the transformer layers,
            ``rate * i / (L - 1)`` over all L blocks of the outlooker and transformer stages
            (VOLO's rule; its outlooker and class-attention blocks have none). Default: 0.
        norm_cfg (dict): Default: LN.
        out_type (str): ``'cls_and_featmap'`` (the tuple (cls (B, C), patch tokens
            (B, C, h, w)), what :class:`VOLOClsHead` takes), ``'cls_token'`` or ``'featmap'``.
        init_cfg (dict | list[dict] | None): Default: None (VOLO's trunc-normal init).

    Returns (forward):
        tuple: one output of ``out_type``.
    """
    arch_zoo = {
        'd1': dict(stem_channels=64, outlook_dims=192, outlook_depth=4, outlook_heads=6,
                   embed_dims=384, depth=14, num_heads=12, ca_depth=2, mlp_ratio=3.),
    }
    OUT_TYPES = ('cls_and_featmap', 'cls_token', 'featmap')
    patch_size = 8

    def __init__(self,
                 arch: Union[str, dict] = 'd1',
                 mixer: dict = dict(type='OutlookAttention', kernel_size=3, stride=2),
                 img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 qkv_bias: bool = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN'),
                 out_type: str = 'cls_and_featmap',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch = self._arch(arch)
        if out_type not in self.OUT_TYPES:
            raise ValueError(f'VOLONet: out_type must be one of {self.OUT_TYPES}, got '
                             f'{out_type!r}')
        self.out_type = out_type
        a = self.arch
        c0, c1, stem = a['outlook_dims'], a['embed_dims'], a['stem_channels']
        conv = dict(norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'), bias=False)
        self.stem = nn.Sequential(
            ConvModule(in_channels, stem, 7, stride=2, padding=3, **conv),
            ConvModule(stem, stem, 3, padding=1, **conv),
            ConvModule(stem, stem, 3, padding=1, **conv),
            nn.Conv2d(stem, c0, self.patch_size // 2, stride=self.patch_size // 2))
        self.mixer_cfg = mixer
        self.outlooker = ModuleList([
            MixerBlock(c0, build_mixer(mixer, embed_dims=c0, num_heads=a['outlook_heads'],
                                       stage=0),
                       mlp_ratio=a['mlp_ratio'], norm1_cfg=norm_cfg, norm2_cfg=norm_cfg)
            for _ in range(a['outlook_depth'])
        ])
        self.downsample = nn.Conv2d(c0, c1, 2, stride=2)

        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.pos_shape = (img_size[0] // 16, img_size[1] // 16)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_shape[0] * self.pos_shape[1], c1))
        self.pos_drop = nn.Dropout(drop_rate)
        total = a['outlook_depth'] + a['depth']
        self.layers = ModuleList([
            TransformerEncoderLayer(
                c1, a['num_heads'], int(c1 * a['mlp_ratio']), qkv_bias=qkv_bias,
                drop_path_rate=drop_path_rate * (a['outlook_depth'] + i) / (total - 1),
                norm_cfg=norm_cfg) for i in range(a['depth'])
        ])
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c1))
        self.class_blocks = ModuleList([
            ClassAttentionBlock(c1, a['num_heads'], a['mlp_ratio'], qkv_bias, norm_cfg=norm_cfg)
            for _ in range(a['ca_depth'])
        ])
        self.norm = build_norm_layer(norm_cfg, c1)[1]

    def _arch(self, arch):
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise KeyError(f'VOLONet: unknown arch {arch!r}; choose from '
                               f'{sorted(self.arch_zoo)} or pass a dict')
            return dict(self.arch_zoo[arch])
        keys = set(self.arch_zoo['d1'])
        if not isinstance(arch, dict) or set(arch) != keys:
            raise ValueError(f'VOLONet: a custom arch needs exactly the keys {sorted(keys)}, '
                             f'got {arch!r}')
        return dict(arch)

    def init_weights(self) -> None:
        """mmengine's init, then VOLO's for the position embedding and cls token."""
        super().init_weights()
        if self.init_cfg is None:  # VOLO's init; the mixers keep their own
            trunc_normal_(self.pos_embed, std=.02)
            trunc_normal_(self.cls_token, std=.02)

    def forward(self, x: torch.Tensor) -> Tuple:
        """(B, 3, H, W) -> one output of ``out_type`` (see the class docstring)."""
        x = self.stem(x).permute(0, 2, 3, 1)  # B, H/8, W/8, C0
        for block in self.outlooker:
            x = block(x)
        x = self.downsample(x.permute(0, 3, 1, 2))
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        pos = resize_pos_embed(self.pos_embed, self.pos_shape, (h, w), num_extra_tokens=0)
        x = self.pos_drop(x + pos)
        for layer in self.layers:
            x = layer(x)
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1)
        for block in self.class_blocks:
            x = block(x)
        x = self.norm(x)
        cls, featmap = x[:, 0], x[:, 1:].transpose(1, 2).reshape(b, c, h, w)
        out = {'cls_token': cls, 'featmap': featmap, 'cls_and_featmap': (cls, featmap)}
        return (out[self.out_type], )


@register_model()
class VOLOClsHead(LinearClsHead):
    """VOLO's classifier: ``fc(cls) + aux_weight * max over tokens of aux_fc(tokens)``.

    This is VOLO's inference rule (its auxiliary head is trained by token labelling in the
    official code).  Without token labels this head is trained on the same combined score.

    Args:
        num_classes (int), in_channels (int): as :class:`LinearClsHead`.
        aux_weight (float): weight of the token maximum. Default: 0.5.
        Others: see :class:`~mmpretrain.models.heads.LinearClsHead`.

    Input:
        the backbone's ``(cls (B, C), patch tokens (B, C, h, w))`` as the last feature.
    """

    def __init__(self, num_classes: int, in_channels: int, aux_weight: float = 0.5,
                 **kwargs: Any) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        self.aux_weight = aux_weight
        self.aux_fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Class scores (B, num_classes) from the backbone's (cls token, patch tokens)."""
        cls, featmap = self.pre_logits(feats)
        aux = self.aux_fc(featmap.flatten(2).transpose(1, 2)).amax(dim=1)
        return self.fc(cls) + self.aux_weight * aux
