"""Data transforms for the digits demo's classification pretraining (needs mmpretrain)."""
from typing import Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS

from .photos import PHOTOS, load_photos, paint_digit, photo_background


@TRANSFORMS.register_module()
class PaintOnPhoto(BaseTransform):
    """Repaint a light-on-dark digit image on a crop of a real photo, at a random scale and
    place, in a colour that contrasts with the photo: classification pretraining that looks
    like the digit scenes the detectors and segmenters are fine-tuned on.

    The input image (``results['img']``, (H, W) or (H, W, C) uint8, strokes light on a dark
    background, as ``demo/digits.py`` writes them) is read as the digit's stroke intensity
    (its channel mean, 0..1). The digit is shrunk to ``scale`` of the image's height (its width
    by a further 0.75-1), placed at random inside the image, and painted on a photo background
    of the image's size (:func:`photo_background`). The output has the input's size and 3
    channels, in the channel order of ``channel_order``.

    Args:
        prob: chance that an image is repainted (otherwise it passes unchanged).
        scale: (min, max) digit height as a fraction of the image's height.
        photos: names of ``skimage.data`` photos to cut backgrounds from.
        channel_order: ``'bgr'`` (mmcv's ``LoadImageFromFile`` default) or ``'rgb'``.
        seed: seed of the transform's own generator; None (default) draws each image's
            randomness from NumPy's global generator, as mmcv's transforms do, which mmengine
            seeds from ``randomness.seed`` (and differently in each data-loader worker).
    """

    def __init__(self, prob: float = 0.8, scale: Tuple[float, float] = (0.5, 1.),
                 photos: Sequence[str] = PHOTOS, channel_order: str = 'bgr',
                 seed: Optional[int] = None) -> None:
        if not 0. <= prob <= 1.:
            raise ValueError(f'PaintOnPhoto: prob must be in [0, 1], got {prob}')
        if not (0. < scale[0] <= scale[1] <= 1.):
            raise ValueError(f'PaintOnPhoto: scale must be (min, max) with 0 < min <= max <= 1, '
                             f'got {scale}')
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"PaintOnPhoto: channel_order must be 'bgr' or 'rgb', got "
                             f'{channel_order!r}')
        self.prob, self.scale, self.channel_order = prob, tuple(scale), channel_order
        self.photo_names = tuple(photos)
        self.photos = load_photos(self.photo_names)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def transform(self, results: dict) -> dict:
        rng = self.rng or np.random.default_rng(np.random.randint(2**31))
        if rng.uniform() >= self.prob:
            return results
        from PIL import Image
        img = np.asarray(results['img'])
        intensity = (img.mean(axis=2) if img.ndim == 3 else img.astype(np.float64)) / 255.
        height, width = intensity.shape
        h = max(4, int(round(height * rng.uniform(*self.scale))))
        w = max(4, min(width, int(round(h * width / height * rng.uniform(0.75, 1.)))))
        alpha = np.asarray(
            Image.fromarray(np.round(intensity * 255).astype(np.uint8)).resize(
                (w, h), Image.BICUBIC), np.float64) / 255.
        canvas = photo_background(rng, self.photos, width, height)
        x = int(rng.integers(0, width - w + 1))
        y = int(rng.integers(0, height - h + 1))
        paint_digit(canvas, alpha, x, y, rng)
        out = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)
        if self.channel_order == 'bgr':
            out = np.ascontiguousarray(out[..., ::-1])
        results['img'] = out
        results['img_shape'] = out.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, scale={self.scale}, '
                f'photos={self.photo_names}, channel_order={self.channel_order!r})')
