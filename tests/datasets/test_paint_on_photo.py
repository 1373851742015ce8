"""PaintOnPhoto: the digits classifier's pretraining transform (digits repainted on photos)."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('skimage')
from mmdwnet.datasets import PaintOnPhoto  # noqa: E402


def _digit(size=32):
    """A light-on-dark test digit: a ring (strokes 255 on 0), (size, size, 3) uint8."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    ring = ((r > size / 4) & (r < size / 3)).astype(np.uint8) * 255
    return np.repeat(ring[..., None], 3, axis=2)


def test_repaints_on_a_photo_at_the_input_size():
    out = PaintOnPhoto(prob=1., seed=0).transform(dict(img=_digit()))
    img = out['img']
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and out['img_shape'] == (32, 32)
    # a photo background, not the black input: many grey levels, few pure-black pixels
    assert len(np.unique(img)) > 50 and (img.sum(2) == 0).mean() < 0.05
    grey = PaintOnPhoto(prob=1., seed=0).transform(dict(img=_digit()[..., 0]))['img']
    assert grey.shape == (32, 32, 3)


def test_a_white_input_paints_one_uniform_box_of_the_sampled_size():
    """Every pixel of a white (all-stroke) input is painted in the one colour: the painted box
    is uniform, at least half the image high (scale 0.5-1) and 0.75-1 of that wide."""
    white = np.full((32, 32, 3), 255, np.uint8)
    for seed in range(5):
        img = PaintOnPhoto(prob=1., seed=seed).transform(dict(img=white.copy()))['img']
        colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
        assert counts.max() >= 16 * 12, seed
        ys, xs = np.nonzero((img == colours[counts.argmax()]).all(2))
        assert ys.max() - ys.min() + 1 >= 16 and xs.max() - xs.min() + 1 >= 12


def test_probability_seed_and_global_generator():
    digit = _digit()
    assert PaintOnPhoto(prob=0.).transform(dict(img=digit))['img'] is digit
    a, b = (PaintOnPhoto(prob=1., seed=3).transform(dict(img=digit))['img'] for _ in range(2))
    c = PaintOnPhoto(prob=1., seed=4).transform(dict(img=digit))['img']
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    draws = []
    for _ in range(2):  # seed=None: NumPy's global generator, which mmengine seeds
        np.random.seed(7)
        draws.append(PaintOnPhoto(prob=1.).transform(dict(img=digit))['img'])
    assert np.array_equal(*draws)
    t = PaintOnPhoto(prob=.5, seed=1)
    repainted = sum(t.transform(dict(img=digit))['img'] is not digit for _ in range(200))
    assert 60 < repainted < 140


def test_rgb_order_is_the_bgr_output_reversed():
    bgr = PaintOnPhoto(prob=1., seed=5).transform(dict(img=_digit()))['img']
    rgb = PaintOnPhoto(prob=1., seed=5, channel_order='rgb').transform(dict(img=_digit()))['img']
    assert np.array_equal(bgr, rgb[..., ::-1])


@pytest.mark.parametrize('kwargs, match', [
    (dict(prob=1.5), 'prob must be in'), (dict(scale=(0., 1.)), 'scale must be'),
    (dict(scale=(0.8, 0.5)), 'scale must be'), (dict(channel_order='hsv'), 'channel_order'),
    (dict(photos=('no_such_photo', )), 'no photo')])
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PaintOnPhoto(**kwargs)


def test_the_pretraining_config_builds_its_pipeline():
    from mmengine.config import Config
    from mmpretrain.registry import TRANSFORMS
    cfg = Config.fromfile(str(Path(__file__).resolve().parents[2] / 'configs' / 'classification'
                              / 'digits' / 'dwnet-nano_1xb64-30e_digits-on-photos-32px.py'))
    steps = [TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline]
    assert isinstance(steps[1], PaintOnPhoto) and cfg.train_cfg.max_epochs == 30
    assert [t['type'] for t in cfg.val_dataloader.dataset.pipeline] == ['LoadImageFromFile',
                                                                        'PackInputs']
