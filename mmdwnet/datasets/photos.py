"""Real photos as backgrounds for digits: scikit-image's embedded photos (no download), the
digit scenes' backgrounds (``demo/digit_scenes.py``) and the classifier pretraining's
(:class:`~mmdwnet.datasets.transforms.PaintOnPhoto`)."""
from typing import Sequence, Tuple

import numpy as np

__all__ = ['PHOTOS', 'load_photos', 'photo_background', 'paint_digit']

# scikit-image's photos that ship inside the package (no download); grey ones are made RGB
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry', 'retina',
          'hubble_deep_field', 'camera', 'coins', 'moon', 'brick', 'grass', 'gravel', 'page',
          'text', 'clock')


def load_photos(names: Sequence[str] = PHOTOS) -> list:
    """scikit-image's embedded photos ``names`` as a list of (H, W, 3) uint8 RGB arrays."""
    try:
        from skimage import data
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "scikit-image's embedded photos are needed (nothing is downloaded): "
            'pip install -c requirements/constraints.txt scikit-image') from e
    photos = []
    for name in names:
        if not hasattr(data, name):
            raise ValueError(f'skimage.data has no photo {name!r}; choose from {PHOTOS}')
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        photos.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return photos


def photo_background(rng: np.random.Generator, photos: list, width: int, height: int,
                     zoom: Tuple[float, float] = (1., 3.),
                     contrast: Tuple[float, float] = (0.5, 0.9)) -> np.ndarray:
    """A (height, width, 3) float64 crop in 0..1 of a random photo, zoomed out ``zoom`` (a
    crop ``zoom`` times the output's size, resized down) with its contrast scaled by a factor
    drawn from ``contrast``."""
    from PIL import Image
    photo = photos[rng.integers(len(photos))]
    z = rng.uniform(*zoom)
    ch = min(photo.shape[0], int(round(height * z)))
    cw = min(photo.shape[1], int(round(width * z)))
    y, x = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
    crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((width, height), Image.BILINEAR)
    bg = np.asarray(crop, dtype=np.float64) / 255.
    mean = bg.mean()
    return mean + (bg - mean) * rng.uniform(*contrast)


def paint_digit(canvas: np.ndarray, alpha: np.ndarray, x: int, y: int,
                rng: np.random.Generator) -> None:
    """Paint a digit (stroke intensity ``alpha``, (h, w) in 0..1) into ``canvas`` ((H, W, 3)
    float in 0..1) at column ``x``, row ``y``, in place, in a random colour that contrasts with
    the photo under it (dark on a light region, light on a dark one)."""
    h, w = alpha.shape
    region = canvas[y:y + h, x:x + w]
    colour = rng.uniform(0., .3, 3) if region.mean() > .5 else rng.uniform(.7, 1., 3)
    a = np.clip(alpha * 1.25, 0, 1)[..., None]
    canvas[y:y + h, x:x + w] = region * (1 - a) + colour * a
