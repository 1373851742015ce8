"""Layers shared by the backbones, with the CPU inference fast path of the dense layers.

* :mod:`.dense` -- :class:`Linear`, :class:`FFN`, :func:`use_fast_linears`,
  :func:`prepare_for_inference`;
* :mod:`.switches` -- ``MMDWNET_FAST_INFERENCE`` / :func:`fast_inference`.
"""
from .dense import FFN, Linear, prepare_for_inference, use_fast_linears, use_fast_path
from .switches import fast_inference, fast_inference_enabled

__all__ = ['FFN', 'Linear', 'prepare_for_inference', 'use_fast_linears', 'use_fast_path',
           'fast_inference', 'fast_inference_enabled']
