"""One Swin-style macro architecture in which only the spatial mixer changes."""
import copy
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.transformer import PatchEmbed
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmdwnet.converters.loading import (load_pretrained, prepare_backbone_state,
                                        pretrained_init_cfg)
from mmdwnet.registry import close_matches, register_model
from ..checks import check_bool, check_cfg, check_int, check_pair, check_positive, check_rate
from ..mixers.builder import build_mixer
from ..norms import is_channels_first_norm
from .blocks import MixerBlock, MixerStage, PatchMerging


@register_model()
class LocalMixerNet(BaseModule):
    """4x4 patch embedding, four stages of :class:`MixerBlock` joined by patch merging.

    The paper's models differ only in ``mixer`` and the block norms; the named presets
    (:class:`DWNet`, :class:`DynamicDWNet`, :class:`IDynamicDWNet`, :class:`SwinNet`,
    :class:`SlidingWindowNet`, :class:`LocalMLPNet`) fill those in.  One definition serves
    classification (``out_indices=(3,)``, LN output norm), detection and segmentation
    (``out_indices=(0, 1, 2, 3)``, BN or LN output norms, ``pad_to_window=True``).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` or a dict with ``embed_dims``,
            ``depths`` and ``num_heads`` (per stage: attention heads, weight groups).
        mixer (dict | list[dict]): mixer config, or one per stage.  The backbone adds what the
            mixer's ``__init__`` accepts of ``embed_dims``, ``num_heads``, ``input_resolution``,
            ``shift`` (odd blocks), ``pad_to_window`` and ``stage``.
        img_size (int | tuple): nominal input size; only mixers with position-specific weights
            depend on it. Default: 224.
        in_channels (int): Default: 3.
        patch_size (int): Default: 4.
        mlp_ratio (float): Default: 4.
        drop_rate (float): dropout after the patch embedding and in FFNs. Default: 0.
        drop_path_rate (float): stochastic depth, linearly increasing per block. Default: 0.1.
        norm1_cfg (dict | None): norm before the mixer; None for the DW-conv family.
        norm2_cfg (dict): norm before the FFN (BN for DWNet, LN for Swin).
        patch_norm_cfg (dict | None): norm after the patch embedding. Default: LN.
        merge_norm_cfg (dict): norm in patch merging. Default: LN.
        out_indices (Sequence[int]): stages whose outputs are returned. Default: (3,).
        out_norm_cfg (dict | None): norm ``norm{i}`` on each returned stage (LN as the
            classification models' final norm; BN for the DW-conv family's detection and
            segmentation backbones, LN for Swin's). None: no output norm.
        pad_to_window (bool): official detection/segmentation padding behaviour of the mixers.
        se_ratio (int | None): squeeze-and-excitation after every mixer (Table 15).
        ffn_dwconv_kernel (int | None): extra depth-wise conv before every FFN (Table 6).
        ffn_dwconv_norm_first (bool): its form, True ``x + DW(BN(x))`` as Shuffle Transformer
            and the paper, False the variant ``x + BN(DW(x))``. Default: True.
        frozen_stages (int): freeze the patch embedding (>= 0) and stages ``< frozen_stages``
            with their output norms. Default: -1.
        norm_eval (bool): keep BN layers in eval mode during training. Default: False.
        with_cp (bool): gradient checkpointing per block. Default: False.
        init_cfg (dict | list | None): e.g. ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')``.

    Shape:
        (B, in_channels, H, W) -> tuple of (B, C_i, ceil(H/4/2^i), ceil(W/4/2^i)).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import LocalMixerNet
        >>> model = LocalMixerNet(arch='tiny', mixer=dict(type='DWConv', kernel_size=7),
        ...                       out_indices=(0, 1, 2, 3)).eval()
        >>> with torch.no_grad():
        ...     outs = model(torch.rand(1, 3, 224, 224))
        >>> for out in outs:
        ...     print(tuple(out.shape))
        (1, 96, 56, 56)
        (1, 192, 28, 28)
        (1, 384, 14, 14)
        (1, 768, 7, 7)
        >>> # one mixer per stage, a small custom architecture
        >>> model = LocalMixerNet(
        ...     arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8]),
        ...     mixer=[dict(type='DWConv'), dict(type='DynamicDWConv'),
        ...            dict(type='IDynamicDWConv'), dict(type='ShiftedWindowAttention')],
        ...     norm1_cfg=dict(type='LN'), pad_to_window=True).eval()
        >>> model(torch.rand(2, 3, 64, 64))[0].shape
        torch.Size([2, 128, 2, 2])
    """

    converts_official_checkpoints = True  # parents get mmdwnet's checkpoint hook
    # state-dict layout version (recorded in every saved state dict's metadata): bump it when
    # keys change and add the migration to mmdwnet.converters.loading.MIGRATIONS
    _version = 1

    arch_zoo = {
        'tiny': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
        'small': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
        'base': dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 mixer: Union[dict, Sequence[dict]] = dict(type='DWConv', kernel_size=7),
                 img_size: Union[int, Tuple[int, int]] = 224,
                 in_channels: int = 3,
                 patch_size: int = 4,
                 mlp_ratio: float = 4.,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.1,
                 norm1_cfg: Optional[dict] = None,
                 norm2_cfg: dict = dict(type='BN'),
                 patch_norm_cfg: Optional[dict] = dict(type='LN'),
                 merge_norm_cfg: dict = dict(type='LN'),
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 out_norm_cfg: Optional[dict] = dict(type='LN'),
                 pad_to_window: bool = False,
                 se_ratio: Optional[float] = None,
                 ffn_dwconv_kernel: Optional[int] = None,
                 ffn_dwconv_norm_first: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
                dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
            ]
        super().__init__(init_cfg=init_cfg)
        self._check_arguments(locals())
        self.arch_settings = self._parse_arch(arch)
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        num_heads = self.arch_settings['num_heads']
        self.num_stages = len(depths)
        self.embed_dims, self.in_channels = embed_dims, in_channels
        self.num_features = [embed_dims * 2**i for i in range(self.num_stages)]
        self.out_indices = self._parse_out_indices(out_indices)
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        mixers = self._parse_mixers(mixer)

        self.patch_embed = PatchEmbed(
            in_channels=in_channels, embed_dims=embed_dims, conv_type='Conv2d',
            kernel_size=patch_size, stride=patch_size, padding='corner',
            norm_cfg=patch_norm_cfg)
        self.drop_after_pos = torch.nn.Dropout(p=drop_rate)

        img_h, img_w = (img_size, img_size) if isinstance(img_size, int) else img_size
        res = (math.ceil(img_h / patch_size), math.ceil(img_w / patch_size))
        dpr = torch.linspace(0, drop_path_rate, sum(depths), dtype=torch.float64).tolist()
        self.stages = torch.nn.ModuleList()
        for i, depth in enumerate(depths):
            dims = self.num_features[i]
            blocks = []
            for j in range(depth):
                block_mixer = build_mixer(
                    mixers[i], embed_dims=dims, num_heads=num_heads[i], input_resolution=res,
                    shift=j % 2 == 1, pad_to_window=pad_to_window, stage=i)
                blocks.append(
                    MixerBlock(dims, block_mixer, mlp_ratio=mlp_ratio, drop_rate=drop_rate,
                               drop_path=dpr[sum(depths[:i]) + j], norm1_cfg=norm1_cfg,
                               norm2_cfg=norm2_cfg, se_ratio=se_ratio,
                               ffn_dwconv_kernel=ffn_dwconv_kernel,
                               ffn_dwconv_norm_first=ffn_dwconv_norm_first, with_cp=with_cp))
            downsample = None
            if i < self.num_stages - 1:
                downsample = PatchMerging(dims, self.num_features[i + 1], merge_norm_cfg)
                res = (math.ceil(res[0] / 2), math.ceil(res[1] / 2))
            self.stages.append(MixerStage(blocks, downsample))

        self.out_norm_cfg = out_norm_cfg
        self._out_norm_cf = False
        for i in self.out_indices:
            if out_norm_cfg is None:
                continue
            layer = build_norm_layer(out_norm_cfg, self.num_features[i])[1]
            self._out_norm_cf = is_channels_first_norm(layer)
            self.add_module(f'norm{i}', layer)
        self._freeze_stages()

    def init_weights(self) -> None:
        """Initialise; ``init_cfg=dict(type='Pretrained', checkpoint, prefix)`` loads official
        or mmdwnet checkpoints (:func:`mmdwnet.converters.loading.load_pretrained`)."""
        pretrained, others = pretrained_init_cfg(self.init_cfg)
        if pretrained is None:
            return super().init_weights()
        self.init_cfg = others
        try:
            super().init_weights()
        finally:
            self.init_cfg = pretrained if others is None else others + [pretrained]
        load_pretrained(self, pretrained['checkpoint'], prefix=pretrained.get('prefix'),
                        map_location=pretrained.get('map_location', 'cpu'))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        """Convert official keys, migrate older versions and check completeness before torch
        copies the tensors (:func:`mmdwnet.converters.loading.prepare_backbone_state`)."""
        prepare_backbone_state(self, state_dict, prefix, local_metadata.get('version'),
                               out_norm_cf=self._out_norm_cf, unexpected_keys=unexpected_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # ------------------------------------------------------------------ argument parsing
    def _check_arguments(self, args):
        """Validate the arguments that are not parsed below (the blocks and mixers check theirs)."""
        owner = type(self).__name__
        check_pair('img_size', args['img_size'], owner=owner)
        check_int('in_channels', args['in_channels'], owner=owner)
        check_int('patch_size', args['patch_size'], owner=owner)
        check_rate('drop_rate', args['drop_rate'], owner=owner)
        check_rate('drop_path_rate', args['drop_path_rate'], owner=owner,
                   why=' (a rate of 1 drops every residual branch and gives NaN in training)')
        for name in ('norm1_cfg', 'patch_norm_cfg', 'out_norm_cfg'):
            check_cfg(name, args[name], owner=owner, allow_none=True)
        for name in ('norm2_cfg', 'merge_norm_cfg'):
            check_cfg(name, args[name], owner=owner)
        for name in ('pad_to_window', 'norm_eval', 'with_cp'):
            check_bool(name, args[name], owner=owner)
        check_int('frozen_stages', args['frozen_stages'], minimum=-1, owner=owner)

    def _parse_arch(self, arch):
        if isinstance(arch, str):
            key = arch.lower()
            if key not in self.arch_zoo:
                close = close_matches(key, self.arch_zoo, n=3)
                raise ValueError(f'unknown arch {arch!r}; choose one of {sorted(self.arch_zoo)} '
                                 f'(close: {close}) or pass a dict with embed_dims, depths, '
                                 'num_heads')
            return copy.deepcopy(self.arch_zoo[key])
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        missing = {'embed_dims', 'depths', 'num_heads'} - set(arch)
        if missing:
            raise ValueError(f'arch dict is missing {sorted(missing)}; it needs embed_dims, '
                             f'depths and num_heads (one per stage)')
        arch = copy.deepcopy(arch)
        owner = type(self).__name__
        check_int("arch['embed_dims']", arch['embed_dims'], owner=owner)
        depths, heads = arch['depths'], arch['num_heads']
        if isinstance(depths, (str, dict)) or not hasattr(depths, '__len__') or not depths:
            raise ValueError(f"{owner}: arch['depths']={depths!r} is not allowed; it must be a "
                             'non-empty list of block counts, one per stage')
        depths = [check_int(f"arch['depths'][{i}]", d, owner=owner) for i, d in enumerate(depths)]
        heads = [heads] * len(depths) if isinstance(heads, int) else list(heads)
        heads = [check_int(f"arch['num_heads'][{i}]", h, owner=owner) for i, h in enumerate(heads)]
        if len(heads) != len(depths):
            raise ValueError(f'arch has {len(depths)} stages (depths={depths}) but '
                             f'{len(heads)} num_heads ({heads})')
        unknown = set(arch) - {'embed_dims', 'depths', 'num_heads'}
        if unknown:
            raise ValueError(f'arch dict has unknown keys {sorted(unknown)}')
        return dict(embed_dims=arch['embed_dims'], depths=depths, num_heads=heads)

    def _parse_out_indices(self, out_indices):
        """Stage indices (negative ones count from the end) -> increasing tuple.

        Outputs come in stage order, as in mmpretrain's backbones; a repeated or out-of-order
        index would silently return fewer or reordered outputs, so both are rejected.
        """
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        given = tuple(out_indices)
        result = []
        for i in given:
            check_int('out_indices entry', i, minimum=-self.num_stages, owner=type(self).__name__)
            j = i + self.num_stages if i < 0 else i
            if not 0 <= j < self.num_stages:
                raise ValueError(f'out_indices {given} out of range for '
                                 f'{self.num_stages} stages')
            result.append(j)
        if not result:
            raise ValueError('out_indices is empty; name at least one stage, e.g. (3,)')
        if len(set(result)) != len(result) or result != sorted(result):
            raise ValueError(f'out_indices {given} must name each stage once, in increasing '
                             f'order (outputs come in stage order); use '
                             f'{tuple(sorted(set(result)))}')
        return tuple(result)

    def _parse_mixers(self, mixer):
        if isinstance(mixer, dict):
            return [mixer] * self.num_stages
        if not isinstance(mixer, (list, tuple)):
            hint = f' Use dict(type={mixer!r}).' if isinstance(mixer, str) else ''
            raise TypeError(f'{type(self).__name__}: mixer={mixer!r} is not allowed; it must be a '
                            f"config dict such as dict(type='DWConv', kernel_size=7) or a list "
                            f'of {self.num_stages} of them (one per stage).{hint}')
        mixer = list(mixer)
        if len(mixer) != self.num_stages:
            raise ValueError(f'{len(mixer)} mixer configs given for {self.num_stages} stages')
        for i, cfg in enumerate(mixer):
            if not isinstance(cfg, dict):
                hint = f' Use dict(type={cfg!r}).' if isinstance(cfg, str) else ''
                raise TypeError(f'{type(self).__name__}: mixer[{i}]={cfg!r} is not allowed; each '
                                f'stage needs a mixer config dict.{hint}')
        return mixer

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, C_in, H, W) -> tuple of stage outputs (B, C_i, H_i, W_i); B may be 0."""
        self._check_input(x)
        x, (h, w) = self.patch_embed(x)
        x = self.drop_after_pos(x.view(x.shape[0], h, w, x.shape[-1]))
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(self._output(i, x))
            if stage.downsample is not None:
                x = stage.downsample(x)
        return tuple(outs)

    def _check_input(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'{type(self).__name__} expects images of shape (B, C, H, W) with '
                             f'C = in_channels = {self.in_channels}, got {got}')
        if not x.is_floating_point():
            raise TypeError(f'{type(self).__name__} expects floating-point images, got {x.dtype}; '
                            'convert with x.float()')

    def _output(self, i, x):
        norm = getattr(self, f'norm{i}', None)
        if norm is None:
            return x.permute(0, 3, 1, 2).contiguous()
        if self._out_norm_cf:
            return norm(x.permute(0, 3, 1, 2).contiguous())
        return norm(x).permute(0, 3, 1, 2).contiguous()

    # ------------------------------------------------------------------ training behaviour
    def _freeze_stages(self):
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for p in self.patch_embed.parameters():
                p.requires_grad = False
        for i in range(min(self.frozen_stages, self.num_stages)):
            modules = [self.stages[i]]
            if hasattr(self, f'norm{i}'):
                modules.append(getattr(self, f'norm{i}'))
            for m in modules:
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> 'LocalMixerNet':
        """Set train mode, keep frozen stages (and BN with ``norm_eval``) in eval; return self."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (_BatchNorm, torch.nn.SyncBatchNorm)):
                    m.eval()
        return self

    # ------------------------------------------------------------------ fine-tuning
    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer-wise depth of a parameter (layer-wise lr decay, mmpretrain's convention).

        Used by mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` through
        ``ImageClassifier.get_layer_depth`` (``prefix='backbone.'``). As in mmpretrain's
        ``SwinTransformer.get_layer_depth``, with ``num_layers = sum(depths) + 2``:

        * ``patch_embed.*``: depth 0;
        * ``stages.i.blocks.j.*``: ``sum(depths[:i]) + j + 1``;
        * ``stages.i.downsample.*`` (patch merging after stage i): ``sum(depths[:i + 1])``;
        * everything else -- output norms ``norm{i}``, and names without ``prefix`` (neck,
          head): ``num_layers - 1``.

        Returns:
            tuple[int, int]: (layer depth, number of layers).
        """
        depths = self.arch_settings['depths']
        num_layers = sum(depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'patch_embed':
            return 0, num_layers
        if parts[0] == 'stages':
            stage = int(parts[1])
            if parts[2] == 'downsample':
                return sum(depths[:stage + 1]), num_layers
            return sum(depths[:stage]) + int(parts[3]) + 1, num_layers
        return num_layers - 1, num_layers
