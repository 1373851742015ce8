from .attention import LocalMLP, ShiftedWindowAttention, SlidingWindowAttention
from .builder import build_mixer
from .dwconv import DWConv, DynamicDWConv, IDynamicDWConv

__all__ = [
    'DWConv', 'DynamicDWConv', 'IDynamicDWConv', 'ShiftedWindowAttention',
    'SlidingWindowAttention', 'LocalMLP', 'build_mixer'
]
