"""ClassWeightAdjustedUPerHead: UPerHead's training, predictions minus log(class weight)."""
import math

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmdwnet.models.heads import ClassWeightAdjustedUPerHead

WEIGHT = [0.1, 1.0, 2.0]


def head_cfg(head_type, class_weight=WEIGHT, lovasz=True):
    losses = [dict(type='CrossEntropyLoss', loss_weight=1.0, class_weight=class_weight)]
    if lovasz:
        losses.append(dict(type='LovaszLoss', reduction='none', loss_weight=1.0))
    return dict(type=head_type, in_channels=[4, 8, 16, 32], in_index=[0, 1, 2, 3],
                pool_scales=(1, 2), channels=8, dropout_ratio=0., num_classes=3,
                norm_cfg=dict(type='BN'), align_corners=False, loss_decode=losses)


def pair():
    init_default_scope('mmseg')
    torch.manual_seed(0)
    plain = MODELS.build(head_cfg('UPerHead'))
    adjusted = MODELS.build(head_cfg('ClassWeightAdjustedUPerHead'))
    assert isinstance(adjusted, ClassWeightAdjustedUPerHead)
    # same parameters and buffers: a UPerHead checkpoint loads strictly, and back
    adjusted.load_state_dict(plain.state_dict(), strict=True)
    assert set(adjusted.state_dict()) == set(plain.state_dict())
    return plain.eval(), adjusted.eval()


def features(n=2, size=16):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(n, c, size // s, size // s, generator=g)
            for c, s in zip((4, 8, 16, 32), (1, 2, 4, 8))]


def test_predictions_are_the_logits_minus_log_class_weight():
    plain, adjusted = pair()
    metas = [dict(img_shape=(64, 64), pad_shape=(64, 64))] * 2
    with torch.no_grad():
        want = plain.predict(features(), metas, dict(mode='whole'))
        got = adjusted.predict(features(), metas, dict(mode='whole'))
    assert got.shape == want.shape == (2, 3, 64, 64)
    shift = torch.tensor([math.log(w) for w in WEIGHT]).view(1, 3, 1, 1)
    torch.testing.assert_close(got, want - shift)
    assert not torch.allclose(got, want)


def test_training_loss_is_upernets():
    plain, adjusted = pair()
    plain.train(), adjusted.train()
    g = torch.Generator().manual_seed(2)
    samples = []
    for _ in range(2):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, 3, (1, 64, 64), generator=g))
        s.set_metainfo(dict(img_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(s)
    want = plain.loss(features(), samples, {})
    got = adjusted.loss(features(), samples, {})
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key])


@pytest.mark.parametrize('class_weight, lovasz, match', [
    (None, True, 'needs a CrossEntropyLoss with class_weight'),
    (None, False, 'needs a CrossEntropyLoss with class_weight'),
    ([0.1, 1.0], True, 'must hold 3 positive weights'),
    ([0.0, 1.0, 1.0], True, 'must hold 3 positive weights'),
])
def test_without_usable_class_weights_is_a_clear_error(class_weight, lovasz, match):
    init_default_scope('mmseg')
    with pytest.raises(ValueError, match=match):
        MODELS.build(head_cfg('ClassWeightAdjustedUPerHead', class_weight, lovasz))
