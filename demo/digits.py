"""Write scikit-learn's handwritten digits as an image folder (ImageNet folder layout).

    python demo/digits.py [ROOT]          (default: data/digits)

Result, written once (a second call finds the finished folder and returns)::

    ROOT/train/<digit>/<index>.png   1437 images, 32x32 grey PNG
    ROOT/val/<digit>/<index>.png      360 images (every 5th sample of the 1797)

The data set (UCI optical digits, 8x8 images with 17 grey levels) ships inside scikit-learn,
so nothing is downloaded.  The 8x8 images are scaled to 0..255 and resized to 32x32
(bicubic), so that a 4x4 patch embedding sees 8x8 token maps.  The folder is built in a
temporary folder next to ``ROOT`` and renamed into place, so an interrupted run never leaves a
half-written data set behind, and an existing ``ROOT`` that is not a finished digits folder is
never touched.
"""
import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

SIZE = 32
VAL_EVERY = 5  # sample i goes to val when i % VAL_EVERY == 0
CLASSES = [str(d) for d in range(10)]
STAMP = '.mmdwnet-digits'  # written last; marks a finished folder


def split_counts():
    """{'train': n, 'val': n} for the 1797 digits."""
    n_val = len(range(0, 1797, VAL_EVERY))
    return {'train': 1797 - n_val, 'val': n_val}


def is_complete(root):
    """True when ``root`` is a finished digits folder written by :func:`write_digits`."""
    root = Path(root)
    if not (root / STAMP).is_file():
        return False
    return all(
        sum(1 for _ in (root / split).glob('*/*.png')) == n for split, n in split_counts().items())


def _to_image(sample):
    """(8, 8) array with values 0..16 -> (SIZE, SIZE) uint8 PIL image."""
    from PIL import Image
    img = Image.fromarray(np.clip(sample * (255. / 16.), 0, 255).round().astype(np.uint8))
    return img.resize((SIZE, SIZE), Image.BICUBIC)


def write_digits(root='data/digits', verbose=True):
    """Write the digits under ``root`` unless they are already there; return ``root`` (Path).

    Raises:
        FileExistsError: ``root`` exists but is not a finished digits folder (it is left as is).
        ModuleNotFoundError: scikit-learn is not installed.
    """
    root = Path(root)
    if is_complete(root):
        if verbose:
            print(f'digits: using the image folder {root}')
        return root
    if root.exists():
        raise FileExistsError(
            f'{root} exists but is not a finished digits folder written by demo/digits.py '
            f'(no {STAMP} stamp or wrong image counts). Remove or rename it, or pass another '
            'folder.')
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            'scikit-learn is needed for the digits data set (it ships inside the package): '
            'pip install -c requirements/constraints.txt scikit-learn') from e
    digits = load_digits()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{root.name}-', dir=root.parent))
    try:
        for i, (sample, label) in enumerate(zip(digits.images, digits.target)):
            split = 'val' if i % VAL_EVERY == 0 else 'train'
            folder = tmp / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            _to_image(sample).save(folder / f'{i:04d}.png')
        (tmp / STAMP).write_text('scikit-learn load_digits, 32x32, val = every 5th sample\n')
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        counts = split_counts()
        print(f'digits: wrote {counts["train"]} train and {counts["val"]} val images '
              f'({SIZE}x{SIZE} PNG, 10 class folders) to {root}')
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', nargs='?', default='data/digits', help='output folder')
    args = parser.parse_args(argv)
    try:
        write_digits(args.root)
    except (FileExistsError, ModuleNotFoundError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
