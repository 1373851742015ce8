"""Where a semantic segmentation model's errors are: finding the objects or naming them.

``python tools/analysis_tools/seg_error_breakdown.py CONFIG CHECKPOINT [--split validation]``
runs a segmentor (mmseg, through :func:`mmdwnet.apis.init_model`) on the images of an
ADE20K-layout folder (``images/<split>/*.jpg`` + ``annotations/<split>/*.png``, class index =
pixel value, 0 = background) and splits its mIoU into

* ``fg_iou``: foreground vs background (any non-zero class vs 0) -- the shapes;
* ``identity_acc``: of the foreground pixels found (true and predicted foreground), the share
  given the right class -- the naming;
* ``pred_to_gt``: predicted / true foreground pixels (> 1: objects painted too large);
* ``ceiling_miou``: the mIoU of a perfect predictor whose scores live at ``stride`` (the decode
  head's output stride): the one-hot labels average-pooled by ``stride``, upsampled bilinearly
  and arg-maxed -- what the output resolution alone allows.
"""
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['confusion', 'breakdown', 'stride_ceiling_confusion']


def confusion(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) pixel counts, rows = true class, columns = predicted; labels outside
    ``[0, num_classes)`` in ``gt`` (e.g. 255, ignore) are not counted."""
    keep = (gt >= 0) & (gt < num_classes)
    idx = gt[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def breakdown(conf: np.ndarray) -> Dict[str, object]:
    """The numbers of the module docstring from a confusion matrix (class 0 = background):
    ``iou`` (per class, %), ``miou`` (%), ``fg_iou``, ``fg_precision``, ``fg_recall``,
    ``identity_acc``, ``pred_to_gt``."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    found = conf[1:, 1:].sum()
    true_fg, pred_fg = conf[1:, :].sum(), conf[:, 1:].sum()

    def ratio(a, b):  # nan when nothing to divide by (e.g. no foreground predicted)
        return float(a / b) if b else float('nan')

    return dict(iou=np.round(iou * 100, 2).tolist(), miou=float(np.nanmean(iou) * 100),
                fg_iou=ratio(found, true_fg + pred_fg - found),
                fg_precision=ratio(found, pred_fg), fg_recall=ratio(found, true_fg),
                identity_acc=ratio(tp[1:].sum(), found), pred_to_gt=ratio(pred_fg, true_fg))


def stride_ceiling_confusion(gt: np.ndarray, num_classes: int, stride: int) -> np.ndarray:
    """The confusion matrix of the best predictor at ``stride`` (module docstring) on the
    (H, W) label map ``gt``."""
    h, w = gt.shape
    onehot = F.one_hot(torch.from_numpy(gt.astype(np.int64)).clamp(0, num_classes - 1),
                       num_classes).permute(2, 0, 1)[None].float()
    low = F.adaptive_avg_pool2d(onehot, (-(-h // stride), -(-w // stride)))
    pred = F.interpolate(low, (h, w), mode='bilinear', align_corners=False).argmax(1)[0]
    return confusion(gt, pred.numpy(), num_classes)
