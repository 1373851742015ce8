"""Write scenes of scikit-learn's handwritten digits on real photos, as COCO and ADE20K data sets.

    python demo/digit_scenes.py [--out data/digit_scenes] [--seed 0] [--train-scenes 1920] ...

Each scene is a canvas of a random (odd) size between ``--min-size`` and ``--max-size`` pixels,
cut from one of scikit-image's embedded photos (``skimage.data``: astronaut, coffee, rocket,
brick, ...; so "non-black pixels" is not the answer), with 2-5 digits of scikit-learn's UCI
digits (8x8, 17 grey levels) upscaled to a random size (16-48 px), painted in a colour that
contrasts with the photo under it, at random places.  A digit's instance mask is its stroke
pixels (upscaled intensity above half the maximum) that no later digit covers; its box is the
mask's extent.  A placement is redrawn when its box covers more than ``--max-overlap`` of a
smaller box already placed, or when it would hide more than that share of an earlier digit's
strokes.  Written once (the folder is built next to ``--out`` and renamed into place)::

    OUT/coco/annotations/instances_{train,val}.json   COCO instances (RLE masks), categories
    OUT/coco/{train,val}/<id>.jpg                     '0'..'9' with ids 1..10
    OUT/ade/images/{training,validation}/<id>.jpg      ADE20K layout: pixel value 0 = background,
    OUT/ade/annotations/{training,validation}/<id>.png k + 1 = digit k (reduce_zero_label=False)

Train and val draw from disjoint source digits: val uses the samples ``i % 5 == 0`` of the 1797,
exactly the validation split of ``demo/digits.py``, so a classifier pre-trained there has never
seen a validation scene's digits.  Each annotation keeps its source sample as ``digit_index``.
The same options (seed included) write the same files; a second call with the same options finds
the finished folder and returns, and an existing folder written otherwise is never touched.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits import VAL_EVERY  # noqa: E402  (one definition of the digits' val split)

from mmdwnet.datasets.photos import (PHOTOS, load_photos, paint_digit,  # noqa: E402
                                     photo_background)

CLASSES = tuple(str(d) for d in range(10))  # COCO category id = digit + 1
SEG_CLASSES = ('background', ) + CLASSES  # pixel value = index here
STAMP = '.mmdwnet-digit-scenes.json'  # written last; the options of a finished folder
SPLITS = {'train': ('train', 'training'), 'val': ('val', 'validation')}  # coco, ade names
STROKE = 0.5  # a pixel is a stroke pixel when its upscaled intensity exceeds this (of max)
TRIES = 60  # placements tried per digit before the scene keeps fewer digits


def default_options():
    """The writer's options and their defaults (also the CLI's)."""
    return dict(seed=0, train_scenes=1920, val_scenes=120, min_size=96, max_size=192,
                min_digit=16, max_digit=48, min_digits=2, max_digits=5, max_overlap=0.2)


def check_options(opts):
    """Raise ``ValueError`` naming the option when the options cannot describe scenes."""
    for key in ('train_scenes', 'val_scenes', 'min_size', 'min_digit', 'min_digits'):
        if int(opts[key]) < 1:
            raise ValueError(f'{key.replace("_", "-")} must be at least 1, got {opts[key]}')
    for low, high in (('min_size', 'max_size'), ('min_digit', 'max_digit'),
                      ('min_digits', 'max_digits')):
        if opts[low] > opts[high]:
            raise ValueError(f'--{low.replace("_", "-")} {opts[low]} is larger than '
                             f'--{high.replace("_", "-")} {opts[high]}')
    if opts['min_digit'] < 8:
        raise ValueError(f'--min-digit {opts["min_digit"]}: digits are 8x8 samples; use >= 8 px')
    if opts['max_digit'] > opts['min_size']:
        raise ValueError(f'--max-digit {opts["max_digit"]} does not fit a --min-size '
                         f'{opts["min_size"]} canvas; use a digit size <= the canvas size')
    if not 0 <= opts['max_overlap'] < 1:
        raise ValueError(f'--max-overlap must be in [0, 1), got {opts["max_overlap"]}')


def load_sources():
    """(digits (1797, 8, 8) float in 0..1, labels (1797,), photos: list of (H, W, 3) uint8)."""
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            'scikit-learn is needed for the digit scenes (its digits ship inside the package): '
            'pip install -c requirements/constraints.txt scikit-learn') from e
    digits = load_digits()
    return digits.images / 16., digits.target.astype(int), load_photos(PHOTOS)


def split_indices(n=1797):
    """{'train': indices, 'val': indices} of the source digits: disjoint, val = ``i % 5 == 0``."""
    idx = np.arange(n)
    return {'train': idx[idx % VAL_EVERY != 0], 'val': idx[idx % VAL_EVERY == 0]}


def _digit_alpha(sample, width, height):
    """(8, 8) sample in 0..1 -> (height, width) intensity in 0..1 (bicubic)."""
    from PIL import Image
    img = Image.fromarray(np.round(sample * 255).astype(np.uint8))
    return np.clip(np.asarray(img.resize((width, height), Image.BICUBIC), np.float64) / 255.,
                   0, 1)


def _fits(box, mask, placed, max_overlap):
    """Whether a new digit (box x0, y0, x1, y1 exclusive; full-canvas stroke mask) keeps the
    overlap bounds with the digits ``placed`` before it."""
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    for other in placed:
        ox0, oy0, ox1, oy1 = other['box']
        inter = max(0, min(x1, ox1) - max(x0, ox0)) * max(0, min(y1, oy1) - max(y0, oy0))
        if inter > max_overlap * min(area, (ox1 - ox0) * (oy1 - oy0)):
            return False
        if (other['mask'] & mask).sum() > max_overlap * other['mask'].sum():
            return False
    return True


def draw_scene(rng, photos, digits, labels, pool, opts):
    """One scene: (RGB uint8 (H, W, 3), label map uint8 (H, W), instances).

    ``instances``: list of dicts ``label`` (digit), ``index`` (source sample), ``mask`` (bool
    (H, W), the visible stroke pixels); painted in list order, later ones on top.
    """
    width, height = (int(v) for v in rng.integers(opts['min_size'], opts['max_size'] + 1, 2))
    canvas = photo_background(rng, photos, width, height)
    placed = []
    for _ in range(int(rng.integers(opts['min_digits'], opts['max_digits'] + 1))):
        for _ in range(TRIES):
            index = int(pool[rng.integers(len(pool))])
            size = int(rng.integers(opts['min_digit'], opts['max_digit'] + 1))
            dw = max(opts['min_digit'], min(width, int(round(size * rng.uniform(0.75, 1.)))))
            x, y = int(rng.integers(0, width - dw + 1)), int(rng.integers(0, height - size + 1))
            alpha = _digit_alpha(digits[index], dw, size)
            mask = np.zeros((height, width), bool)
            mask[y:y + size, x:x + dw] = alpha > STROKE
            if mask.sum() < 4 or not _fits((x, y, x + dw, y + size), mask, placed,
                                          opts['max_overlap']):
                continue
            paint_digit(canvas, alpha, x, y, rng)  # a colour that contrasts with the photo
            for other in placed:
                other['mask'] &= ~mask
            placed.append(dict(label=int(labels[index]), index=index, mask=mask,
                               box=(x, y, x + dw, y + size)))
            break
    label_map = np.zeros((height, width), np.uint8)
    for inst in placed:
        label_map[inst['mask']] = inst['label'] + 1
    image = np.clip(np.round(canvas * 255), 0, 255).astype(np.uint8)
    return image, label_map, [dict(label=i['label'], index=i['index'], mask=i['mask'])
                              for i in placed]


def _coco_annotation(inst, ann_id, image_id):
    from pycocotools import mask as mask_utils
    mask = inst['mask']
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(id=ann_id, image_id=image_id, category_id=inst['label'] + 1, segmentation=rle,
                area=int(mask.sum()), bbox=[x0, y0, int(xs.max()) - x0 + 1,
                                            int(ys.max()) - y0 + 1],
                iscrowd=0, digit_index=inst['index'])


def _write_split(tmp, split, num, rng, photos, digits, labels, pool, opts):
    from PIL import Image
    coco_name, ade_name = SPLITS[split]
    dirs = [tmp / 'coco' / coco_name, tmp / 'ade' / 'images' / ade_name,
            tmp / 'ade' / 'annotations' / ade_name]
    for d in dirs:
        d.mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, num + 1):
        image, label_map, instances = draw_scene(rng, photos, digits, labels, pool, opts)
        name = f'{image_id:06d}'
        jpg = Image.fromarray(image)
        jpg.save(dirs[0] / f'{name}.jpg', quality=95)
        jpg.save(dirs[1] / f'{name}.jpg', quality=95)
        Image.fromarray(label_map, mode='L').save(dirs[2] / f'{name}.png')
        images.append(dict(id=image_id, file_name=f'{name}.jpg', width=image.shape[1],
                           height=image.shape[0]))
        for inst in instances:
            annotations.append(_coco_annotation(inst, len(annotations) + 1, image_id))
    categories = [dict(id=i + 1, name=name, supercategory='digit')
                  for i, name in enumerate(CLASSES)]
    (tmp / 'coco' / 'annotations').mkdir(exist_ok=True)
    (tmp / 'coco' / 'annotations' / f'instances_{coco_name}.json').write_text(json.dumps(
        dict(info=dict(description='mmdwnet digit scenes', seed=opts['seed']), images=images,
             annotations=annotations, categories=categories)))
    return len(images), len(annotations)


def write_scenes(out='data/digit_scenes', verbose=True, **options):
    """Write the scenes under ``out`` unless that exact set is already there; return ``out``.

    Options (keywords): see :func:`default_options`.

    Raises:
        ValueError: bad options (the message names the option).
        FileExistsError: ``out`` exists but is not a digit-scenes folder written with these
            options (it is left as is).
        ModuleNotFoundError: scikit-learn or scikit-image is not installed.
    """
    unknown = set(options) - set(default_options())
    if unknown:
        raise TypeError(f'unknown option(s) {sorted(unknown)}; known: '
                        f'{sorted(default_options())}')
    opts = dict(default_options(), **options)
    check_options(opts)
    out = Path(out)
    stamp = out / STAMP
    if stamp.is_file():
        written = json.loads(stamp.read_text())
        if written == opts:
            if verbose:
                print(f'digit scenes: using {out}')
            return out
        raise FileExistsError(
            f'{out} holds digit scenes written with other options ({written}); remove it or '
            'pass another --out')
    if out.exists():
        raise FileExistsError(
            f'{out} exists but is not a finished digit-scenes folder written by '
            f'demo/digit_scenes.py (no {STAMP}). Remove or rename it, or pass another --out.')
    digits, labels, photos = load_sources()
    pools = split_indices(len(digits))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}-', dir=out.parent))
    try:
        counts = {}
        for k, split in enumerate(('train', 'val')):
            rng = np.random.default_rng([opts['seed'], k])
            counts[split] = _write_split(tmp, split, opts[f'{split}_scenes'], rng, photos,
                                         digits, labels, pools[split], opts)
        (tmp / STAMP).write_text(json.dumps(opts, indent=1))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print('digit scenes: wrote ' + ', '.join(
            f'{split} {n} scenes / {m} digits' for split, (n, m) in counts.items()) +
            f' to {out}/coco (COCO instances) and {out}/ade (ADE20K layout)')
    return out


def main(argv=None):
    defaults = default_options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/digit_scenes', help='output folder')
    for key, value in defaults.items():
        parser.add_argument('--' + key.replace('_', '-'), type=type(value), default=value,
                            help=f'default: {value}')
    args = vars(parser.parse_args(argv))
    out = args.pop('out')
    try:
        check_options(args)
    except ValueError as e:
        parser.error(str(e))
    try:
        write_scenes(out, **args)
    except (FileExistsError, ModuleNotFoundError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
