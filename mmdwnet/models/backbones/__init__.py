from .blocks import MixerBlock, MixerStage, PatchMerging
from .local_mixer_net import LocalMixerNet
from .presets import (DWNet, DynamicDWNet, IDynamicDWNet, LocalMLPNet, SlidingWindowNet,
                      SwinNet)

__all__ = [
    'LocalMixerNet', 'DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
    'LocalMLPNet', 'MixerBlock', 'MixerStage', 'PatchMerging'
]

try:  # VOLO reuses mmpretrain's transformer layer and classification head
    from .volo import VOLOClsHead, VOLONet  # noqa: F401
    __all__ += ['VOLONet', 'VOLOClsHead']
except ModuleNotFoundError as e:
    if (e.name or '').split('.')[0] != 'mmpretrain':
        raise
