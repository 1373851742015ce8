from .attention import LocalMLP, ShiftedWindowAttention, SlidingWindowAttention
from .base import MIXERS, MixerContext, MixerNotProbeable, SpatialMixer, register_mixer
from .builder import CONTEXT_KEYS, build_mixer
from .dwconv import DWConv, DynamicDWConv, IDynamicDWConv
from .outlook import OutlookAttention

__all__ = [
    'DWConv', 'DynamicDWConv', 'IDynamicDWConv', 'ShiftedWindowAttention',
    'SlidingWindowAttention', 'LocalMLP', 'OutlookAttention', 'build_mixer', 'CONTEXT_KEYS',
    'MIXERS', 'MixerContext', 'MixerNotProbeable', 'SpatialMixer', 'register_mixer'
]
