from .blocks import MixerBlock, MixerStage, PatchMerging
from .local_mixer_net import LocalMixerNet
from .presets import (PRESETS, DWNet, DynamicDWNet, IDynamicDWNet, LocalMLPNet, Preset,
                      SlidingWindowNet, SwinNet)

__all__ = [
    'LocalMixerNet', 'DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
    'LocalMLPNet', 'MixerBlock', 'MixerStage', 'PatchMerging', 'PRESETS', 'Preset'
]

try:  # VOLO reuses mmpretrain's transformer layer and classification head
    from .volo import VOLOClsHead, VOLONet  # noqa: F401
    __all__ += ['VOLONet', 'VOLOClsHead']
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'mmpretrain':
        raise
