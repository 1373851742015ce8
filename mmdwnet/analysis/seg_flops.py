"""FLOPs of mmseg 1.x segmentors, counted as the paper's Table 3 counts them.

The official code (mmseg 0.x) counted ``forward_dummy`` = ``encode_decode``: backbone, neck and
decode head, with the logits resized to the input; the auxiliary head (training only) is not
counted.  :func:`model_flops` traces the same path of an mmseg 1.x ``EncoderDecoder`` with
:func:`mmdwnet.analysis.flop_analyzer` (mmengine's analyzer plus mmdwnet's custom ops);
FLOPs are multiply-accumulates.
"""
from typing import Tuple

import torch
from torch import nn

from .complexity import flop_analyzer

__all__ = ['model_flops']


class _EncodeDecode(nn.Module):
    """``segmentor.encode_decode(x, metas)`` as a plain module for tracing.

    Shape:
        (B, 3, H, W) -> (B, num_classes, H, W) logits.
    """

    def __init__(self, segmentor):
        super().__init__()
        self.segmentor = segmentor

    def forward(self, x):
        h, w = x.shape[-2:]
        metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))] * x.shape[0]
        return self.segmentor.encode_decode(x, metas)


def _check_shape(shape):
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f'shape must be (H, W), two positive ints, got {shape!r}') from None
    if h <= 0 or w <= 0 or len(tuple(shape)) != 2:
        raise ValueError(f'shape must be (H, W), two positive ints, got {shape!r}')
    return h, w


def model_flops(model: nn.Module, shape: Tuple[int, int], convention: str = 'all') -> int:
    """Multiply-accumulates of ``model.encode_decode`` on one 3 x H x W image.

    Args:
        model (nn.Module): an mmseg segmentor with ``encode_decode`` (e.g. ``EncoderDecoder``).
        shape (tuple[int, int]): input (H, W); the paper's Table 3 uses (512, 2048).
        convention (str): ``'all'`` or ``'modules'`` (:mod:`mmdwnet.analysis.complexity`).

    Returns:
        int: FLOPs (multiply-accumulates) of backbone, neck and decode head.
    """
    if not hasattr(model, 'encode_decode') or not hasattr(model, 'extract_feat'):
        raise TypeError(f'model_flops needs an mmseg segmentor with encode_decode (e.g. '
                        f'EncoderDecoder), got {type(model).__name__}; count a bare backbone '
                        'with mmdwnet.analysis.count_flops instead')
    h, w = _check_shape(shape)
    param = next(model.parameters())
    x = torch.randn(1, 3, h, w, dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(flop_analyzer(_EncodeDecode(model), (x, ), convention).total())
    finally:
        model.train(was_training)
