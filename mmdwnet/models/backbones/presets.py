"""Named presets of :class:`LocalMixerNet`: the paper's models by their mixer.

Each preset only fixes the mixer type and block norms.  ``mixer`` given to a preset is a
partial config merged over the preset's default (``DWNet(mixer=dict(kernel_size=12))``), so
config files can override single mixer options through inheritance.
"""
import copy
from typing import Optional, Union

from mmdwnet.registry import register_model
from .local_mixer_net import LocalMixerNet

_CONV_BLOCK = dict(norm1_cfg=None, norm2_cfg=dict(type='BN'))
_ATTN_BLOCK = dict(norm1_cfg=dict(type='LN'), norm2_cfg=dict(type='LN'))


class _Preset(LocalMixerNet):
    default_mixer = None
    default_block = None

    def __init__(self, arch: Union[str, dict] = 'tiny', mixer: Optional[dict] = None,
                 **kwargs) -> None:
        name = type(self).__name__
        if mixer is not None and not isinstance(mixer, dict):
            if isinstance(mixer, str):
                hint = f'Use mixer=dict(type={mixer!r}) (or only the options to change).'
            elif isinstance(mixer, (list, tuple)):
                hint = ('A preset takes one mixer config for every stage; for one per stage use '
                        'LocalMixerNet(mixer=[...]).')
            else:
                hint = ''
            raise TypeError(f'{name}: mixer={mixer!r} is not allowed; it must be None or a dict '
                            f'of {self.default_mixer["type"]} options, e.g. '
                            f'dict(kernel_size=7). {hint}'.strip())
        mixer_cfg = copy.deepcopy(self.default_mixer)
        overrides = dict(mixer or {})
        given = overrides.pop('type', mixer_cfg['type'])
        if given not in (mixer_cfg['type'], f"mmdwnet.{mixer_cfg['type']}"):
            raise ValueError(f"{type(self).__name__} uses the {mixer_cfg['type']} mixer, got "
                             f"type={given!r}; use LocalMixerNet(mixer=...) for another mixer")
        mixer_cfg.update(overrides)
        for key, value in self.default_block.items():
            kwargs.setdefault(key, copy.deepcopy(value))
        super().__init__(arch=arch, mixer=mixer_cfg, **kwargs)


@register_model()
class DWNet(_Preset):
    """DWNet: static 7x7 depth-wise conv mixer, no pre-mixer norm, BN before the FFN.

    Examples:
        >>> import torch
        >>> from mmdwnet.models import DWNet
        >>> model = DWNet(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 768, 7, 7])
        >>> # a preset's mixer is a partial config over its default
        >>> DWNet(mixer=dict(kernel_size=13)).stages[0].blocks[0].mixer.kernel_size
        13
    """
    default_mixer = dict(type='DWConv', kernel_size=7)
    default_block = _CONV_BLOCK


@register_model()
class DynamicDWNet(_Preset):
    """D-DWNet: homogeneous dynamic depth-wise conv mixer (per-image kernels).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import DynamicDWNet
        >>> model = DynamicDWNet(arch='tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 96, 16, 16])
    """
    default_mixer = dict(type='DynamicDWConv', kernel_size=7)
    default_block = _CONV_BLOCK


@register_model()
class IDynamicDWNet(_Preset):
    """I-D-DWNet: inhomogeneous dynamic depth-wise conv mixer (per-position kernels).

    Weight groups per stage follow the official ``inhomo_heads`` = the stage's ``num_heads``
    channels per group (32 groups in every stage of the tiny and base models).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import IDynamicDWNet
        >>> model = IDynamicDWNet(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 768, 2, 2])
    """
    default_mixer = dict(type='IDynamicDWConv', kernel_size=7)
    default_block = _CONV_BLOCK


@register_model()
class SwinNet(_Preset):
    """Swin: shifted-window attention mixer, LN before mixer and FFN.

    Examples:
        >>> import torch
        >>> from mmdwnet.models import SwinNet
        >>> model = SwinNet(arch='tiny', out_indices=(0, 1, 2, 3), pad_to_window=True).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 60, 100))[0].shape
        torch.Size([1, 96, 15, 25])
        >>> # pad_to_window=True (detection/segmentation) takes any input size
    """
    default_mixer = dict(type='ShiftedWindowAttention', window_size=7)
    default_block = _ATTN_BLOCK


@register_model()
class SlidingWindowNet(_Preset):
    """Sliding-window (neighbourhood) attention mixer (Table 5).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import SlidingWindowNet
        >>> model = SlidingWindowNet(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 768, 2, 2])
    """
    default_mixer = dict(type='SlidingWindowAttention', kernel_size=7)
    default_block = _ATTN_BLOCK


@register_model()
class LocalMLPNet(_Preset):
    """Local MLP of Table 2: static per-window weights shared by the channels of a head, shifted
    windows, not shared across windows (needs a fixed ``img_size``).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import LocalMLPNet
        >>> model = LocalMLPNet(arch='tiny', img_size=224).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 768, 7, 7])
    """
    default_mixer = dict(type='LocalMLP', window_size=7, share_channels=True,
                         share_positions=False)
    default_block = _ATTN_BLOCK
