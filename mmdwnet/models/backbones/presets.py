"""Named presets of :class:`LocalMixerNet`: the paper's models by their mixer.

:data:`PRESETS` is the one table of them: registered type name -> :class:`Preset` (default
mixer config, block norms, config-file stem, archs with configs, official checkpoints).  The
preset classes (:class:`DWNet`, ...) are generated from it and registered; the converters, the
hub and the tools read it.  A new preset is one row.

Each preset only fixes the mixer type and block norms.  ``mixer`` given to a preset is a
partial config merged over the preset's default (``DWNet(mixer=dict(kernel_size=12))``), so
config files can override single mixer options through inheritance.
"""
import copy
import dataclasses
from typing import Dict, Optional, Tuple, Union

from mmdwnet.registry import register_model
from .local_mixer_net import LocalMixerNet

_CONV_BLOCK = dict(norm1_cfg=None, norm2_cfg=dict(type='BN'))
_ATTN_BLOCK = dict(norm1_cfg=dict(type='LN'), norm2_cfg=dict(type='LN'))


class _Preset(LocalMixerNet):
    """Base of the generated preset classes: ``default_mixer`` and ``default_block`` (block
    norms) come from the preset's :data:`PRESETS` row."""
    default_mixer: dict = {}
    default_block: dict = {}

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


@dataclasses.dataclass(frozen=True)
class Preset:
    """One row of :data:`PRESETS`.

    Attributes:
        name (str): registered type name of the preset class (``'DWNet'``).
        mixer (dict): default mixer config (a preset's ``mixer`` argument is merged over it).
        block (dict): block norms (``norm1_cfg``, ``norm2_cfg``).
        config_stem (str): model part of its config names (``'dwnet'`` in
            ``configs/classification/dwnet-tiny_8xb128_in1k.py``).
        archs (tuple[str, ...]): archs with classification configs.
        official (bool): the paper's authors released checkpoints of it (the converters read
            them).
        doc (str): the class docstring.
    """

    name: str
    mixer: dict
    block: dict
    config_stem: str
    archs: Tuple[str, ...]
    official: bool
    doc: str

    def config_name(self, arch: str = 'tiny') -> str:
        """Its ImageNet-1k classification config stem, e.g. ``'dwnet-tiny_8xb128_in1k'``."""
        return f'{self.config_stem}-{arch}_8xb128_in1k'


_ROWS = (
    Preset(
        name='DWNet',
        mixer=dict(type='DWConv', kernel_size=7),
        block=_CONV_BLOCK,
        config_stem='dwnet',
        archs=('tiny', 'base'),
        official=True,
        doc="""DWNet: static 7x7 depth-wise conv mixer, no pre-mixer norm, BN before the FFN.

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
    """),
    Preset(
        name='DynamicDWNet',
        mixer=dict(type='DynamicDWConv', kernel_size=7),
        block=_CONV_BLOCK,
        config_stem='dynamic-dwnet',
        archs=('tiny', 'base'),
        official=True,
        doc="""D-DWNet: homogeneous dynamic depth-wise conv mixer (per-image kernels).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import DynamicDWNet
        >>> model = DynamicDWNet(arch='tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 96, 16, 16])
    """),
    Preset(
        name='IDynamicDWNet',
        mixer=dict(type='IDynamicDWConv', kernel_size=7),
        block=_CONV_BLOCK,
        config_stem='i-dynamic-dwnet',
        archs=('tiny', 'base'),
        official=True,
        doc="""I-D-DWNet: inhomogeneous dynamic depth-wise conv mixer (per-position kernels).

    Weight groups per stage follow the official ``inhomo_heads`` = the stage's ``num_heads``
    channels per group (32 groups in every stage of the tiny and base models).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import IDynamicDWNet
        >>> model = IDynamicDWNet(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 768, 2, 2])
    """),
    Preset(
        name='SwinNet',
        mixer=dict(type='ShiftedWindowAttention', window_size=7),
        block=_ATTN_BLOCK,
        config_stem='swin',
        archs=('tiny', 'base'),
        official=True,
        doc="""Swin: shifted-window attention mixer, LN before mixer and FFN.

    Examples:
        >>> import torch
        >>> from mmdwnet.models import SwinNet
        >>> model = SwinNet(arch='tiny', out_indices=(0, 1, 2, 3), pad_to_window=True).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 60, 100))[0].shape
        torch.Size([1, 96, 15, 25])
        >>> # pad_to_window=True (detection/segmentation) takes any input size
    """),
    Preset(
        name='SlidingWindowNet',
        mixer=dict(type='SlidingWindowAttention', kernel_size=7),
        block=_ATTN_BLOCK,
        config_stem='sliding-attention',
        archs=('tiny',),
        official=False,
        doc="""Sliding-window (neighbourhood) attention mixer (Table 5).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import SlidingWindowNet
        >>> model = SlidingWindowNet(arch='tiny').eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 768, 2, 2])
    """),
    Preset(
        name='LocalMLPNet',
        mixer=dict(type='LocalMLP', window_size=7, share_channels=True,
                       share_positions=False),
        block=_ATTN_BLOCK,
        config_stem='local-mlp',
        archs=('tiny', 'base'),
        official=False,
        doc="""Local MLP of Table 2: static per-window weights shared by the channels of a head, shifted
    windows, not shared across windows (needs a fixed ``img_size``).

    Examples:
        >>> import torch
        >>> from mmdwnet.models import LocalMLPNet
        >>> model = LocalMLPNet(arch='tiny', img_size=224).eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 224, 224))[0].shape
        torch.Size([1, 768, 7, 7])
    """),
)

#: registered type name -> :class:`Preset`, the one table of the presets
PRESETS: Dict[str, Preset] = {row.name: row for row in _ROWS}


def _make_preset_class(row: Preset) -> type:
    """The :class:`_Preset` subclass of a table row, registered under ``row.name``."""
    cls = type(row.name, (_Preset, ), dict(
        default_mixer=row.mixer, default_block=row.block, preset=row, __doc__=row.doc,
        __module__=__name__, __qualname__=row.name))
    return register_model(cls)


#: registered type name -> generated preset class
PRESET_CLASSES: Dict[str, type] = {name: _make_preset_class(row) for name, row in PRESETS.items()}
DWNet = PRESET_CLASSES['DWNet']
DynamicDWNet = PRESET_CLASSES['DynamicDWNet']
IDynamicDWNet = PRESET_CLASSES['IDynamicDWNet']
SwinNet = PRESET_CLASSES['SwinNet']
SlidingWindowNet = PRESET_CLASSES['SlidingWindowNet']
LocalMLPNet = PRESET_CLASSES['LocalMLPNet']


def preset_of_stem(stem: str) -> Optional[Preset]:
    """The preset whose configs are named ``stem`` (``'dwnet'``), or None."""
    return next((row for row in PRESETS.values() if row.config_stem == stem), None)
