"""mmdwnet.analysis.seg_errors: the split of mIoU into shapes and names, on hand-made maps."""
import numpy as np
import pytest

from mmdwnet.analysis.seg_errors import breakdown, confusion, stride_ceiling_confusion


def test_breakdown_separates_shape_from_naming():
    gt = np.zeros((8, 8), np.uint8)
    gt[2:6, 2:6] = 1                   # one object of class 1, 16 pixels
    pred = np.zeros_like(gt)
    pred[2:6, 2:7] = 2                 # found with 4 extra pixels, but named class 2
    pred[2:4, 2:6] = 1                 # 8 of its pixels named right
    gt[7, 7] = 255                     # ignored
    r = breakdown(confusion(gt, pred, 3))
    assert r['fg_iou'] == pytest.approx(16 / 20)
    assert r['fg_recall'] == 1.0 and r['fg_precision'] == pytest.approx(16 / 20)
    assert r['identity_acc'] == pytest.approx(8 / 16)
    assert r['pred_to_gt'] == pytest.approx(20 / 16)
    assert r['iou'][1] == pytest.approx(50.0)
    bg_iou = 43 / 47  # 63 counted pixels, 47 true background, 4 of them painted as objects
    assert r['iou'][0] == pytest.approx(bg_iou * 100, abs=0.01)
    assert r['miou'] == pytest.approx((bg_iou + 0.5 + 0.0) / 3 * 100)


def test_stride_ceiling_is_exact_for_blocks_and_loses_thin_strokes():
    gt = np.zeros((16, 16), np.uint8)
    gt[4:12, 4:12] = 1                 # aligned to the 4-pixel grid: kept almost whole
    block = breakdown(stride_ceiling_confusion(gt, 2, 4))
    assert block['iou'][1] > 80
    thin = np.zeros((16, 16), np.uint8)
    thin[:, 5] = 1                     # a 1-pixel stroke: a quarter of each stride-4 cell
    stroke = breakdown(stride_ceiling_confusion(thin, 2, 4))
    assert stroke['iou'][1] < block['iou'][1]
    assert breakdown(stride_ceiling_confusion(gt, 2, 1))['miou'] == 100.0
