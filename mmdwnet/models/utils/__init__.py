"""Helpers for using the mixers in other architectures."""
from .mixer_swap import MixerAdapter, MixerSwap, swap_mixers

__all__ = ['MixerAdapter', 'MixerSwap', 'swap_mixers']
