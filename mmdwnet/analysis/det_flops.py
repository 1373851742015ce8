"""FLOPs of mmdet 3.x detectors on one random image (multiply-accumulates).

Two ways to feed a detector, both through :func:`mmdwnet.analysis.flop_analyzer` (mmengine's
analyzer with mmdwnet's op handles):

* ``'dummy'`` (default): the convention of mmdet 2.x ``forward_dummy``, which the Swin and
  DemystifyLocalViT papers used for their Table 3 FLOPs: backbone, neck and the RPN head's
  convolutions on the image, then a fixed number of proposals (1000) through every cascade
  stage's box head and the first 100 of them through every stage's mask head.  The count does
  not depend on the weights or on the image content.
* ``'tensor'``: mmdet 3.x's tensor path ``model._forward(inputs, data_samples)`` as mmdet's
  ``tools/analysis_tools/get_flops.py`` feeds it: the RPN's real proposals after NMS go through
  the box heads and *all* of them through the mask heads, so the count depends on the weights
  and the image, and is far larger for Cascade Mask R-CNN.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi

from .complexity import flop_analyzer

__all__ = ['model_flops', 'dummy_proposals']

MODES = ('dummy', 'tensor')


def dummy_proposals(shape: Tuple[int, int], num: int,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """``num`` boxes (x1, y1, x2, y2) of a fixed grid inside an ``(H, W)`` image.

    Returns:
        Tensor: (num, 4) float boxes; the same for every call.
    """
    h, w = shape
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(num, 2, generator=g) * torch.tensor([w * 0.75, h * 0.75])
    wh = (torch.rand(num, 2, generator=g) * 0.2 + 0.05) * torch.tensor([w, h])
    return torch.cat([xy, xy + wh], dim=1).to(device)


class _DummyForward(torch.nn.Module):
    """mmdet 2.x ``TwoStageDetector.forward_dummy`` written with mmdet 3.x modules.

    (1, 3, H, W) image -> tuple of RPN and RoI head tensors.
    """

    def __init__(self, detector, num_proposals=1000, num_mask_rois=100):
        super().__init__()
        self.detector = detector
        self.num_proposals, self.num_mask_rois = num_proposals, num_mask_rois

    def forward(self, img):
        det, roi_head = self.detector, self.detector.roi_head
        x = det.extract_feat(img)
        outs = ()
        if det.with_rpn:
            cls_scores, bbox_preds = det.rpn_head(x)
            outs += tuple(cls_scores) + tuple(bbox_preds)
        proposals = dummy_proposals(img.shape[-2:], self.num_proposals, img.device)
        rois = bbox2roi([proposals])
        stages = list(range(roi_head.num_stages)) if hasattr(roi_head, 'num_stages') else [None]

        def call(fn, stage, *args):
            return fn(*args) if stage is None else fn(stage, *args)

        if roi_head.with_bbox:
            for stage in stages:
                res = call(roi_head._bbox_forward, stage, x, rois)
                outs += (res['cls_score'], res['bbox_pred'])
        if roi_head.with_mask:
            mask_rois = rois[:self.num_mask_rois]
            for stage in stages:
                outs += (call(roi_head._mask_forward, stage, x, mask_rois)['mask_preds'], )
        return outs


class _TensorForward(torch.nn.Module):
    """``detector._forward(img, data_samples)`` (mmdet 3.x ``mode='tensor'``) as a module."""

    def __init__(self, detector, data_samples):
        super().__init__()
        self.detector, self.data_samples = detector, data_samples

    def forward(self, img):
        return self.detector._forward(img, self.data_samples)


def _data_samples(shape):
    h, w = shape
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
        scale_factor=(1., 1.)))
    return [sample]


def _check(model, shape, mode):
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    if not (hasattr(model, 'extract_feat') and hasattr(model, '_forward')):
        raise TypeError(f'model_flops expects an mmdet detector (BaseDetector), got '
                        f'{type(model).__name__}; use mmdwnet.analysis.count_flops for a backbone')
    if mode == 'dummy' and not getattr(model, 'with_roi_head', False):
        raise TypeError(f"mode='dummy' needs a two-stage detector with an RoI head, "
                        f"{type(model).__name__} has none; use mode='tensor'")
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f'shape must be (H, W) with both sides >= 32, got {tuple(shape)}')


def model_flops(model: nn.Module, shape: Tuple[int, int], mode: str = 'dummy',
                num_proposals: int = 1000, num_mask_rois: int = 100,
                convention: str = 'all') -> int:
    """FLOPs (multiply-accumulates) of an mmdet detector on one random ``3 x H x W`` image.

    Args:
        model (BaseDetector): an mmdet 3.x detector (e.g. from ``mmdwnet.apis.init_model``).
        shape (tuple[int, int]): (H, W) of the (already resized and padded) input.
        mode (str): ``'dummy'`` (mmdet 2.x ``forward_dummy``, the papers' convention) or
            ``'tensor'`` (mmdet 3.x ``_forward`` with data samples). See the module docstring.
        num_proposals (int): proposals through the box heads in ``'dummy'`` mode.
        num_mask_rois (int): of those, RoIs through the mask heads in ``'dummy'`` mode.
        convention (str): ``'all'`` or ``'modules'`` (:mod:`mmdwnet.analysis.complexity`).

    Returns:
        int: total FLOPs.
    """
    _check(model, shape, mode)
    device = next(model.parameters()).device
    img = torch.randn(1, 3, *shape, device=device)
    if mode == 'dummy':
        wrapper = _DummyForward(model, num_proposals, num_mask_rois)
    else:
        wrapper = _TensorForward(model, [s.to(device) for s in _data_samples(shape)])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(flop_analyzer(wrapper, (img, ), convention).total())
    finally:
        model.train(was_training)
