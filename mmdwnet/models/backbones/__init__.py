from .blocks import MixerBlock, MixerStage, PatchMerging
from .local_mixer_net import LocalMixerNet
from .presets import (DWNet, DynamicDWNet, IDynamicDWNet, LocalMLPNet, SlidingWindowNet,
                      SwinNet)

__all__ = [
    'LocalMixerNet', 'DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
    'LocalMLPNet', 'MixerBlock', 'MixerStage', 'PatchMerging'
]
