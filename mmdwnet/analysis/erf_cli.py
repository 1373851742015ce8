"""Effective receptive field of one backbone stage, on CPU.

    python tools/analysis_tools/effective_receptive_field.py CONFIG [--checkpoint CKPT]
        [--stage 3] [--images skimage|random|DIR] [--num-images 4] [--img-size 224]
        [--out erf.png] [--cfg-options ...]

Builds the config's model (random init, or ``--checkpoint``), takes its backbone and averages,
over the images, the absolute gradient of the centre position of stage ``--stage``'s output
(summed over channels) w.r.t. the input image.  Writes the heat map (``--out``, PNG) and the raw
array next to it (``.npy``) and prints the area ratios holding 20/30/50/99 % of the ERF.

The command line of ``tools/analysis_tools/effective_receptive_field.py`` (a thin wrapper
around :func:`main`); the computation is :mod:`mmdwnet.analysis.erf`.
"""
import argparse
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import DictAction

from mmdwnet.analysis.erf import (effective_receptive_field, high_contribution_area,
                                  load_images, plot_erf)
from mmdwnet.apis import init_model

__all__ = ['parse_args', 'main']


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='model config (classifier, detector, segmentor or a '
                        'bare backbone)')
    parser.add_argument('--checkpoint', help='checkpoint; random init when omitted')
    parser.add_argument('--stage', type=int, default=3, help='stage index (default: 3)')
    parser.add_argument('--images', default='skimage',
                        help="'skimage' (bundled photos), 'random' or a folder of images")
    parser.add_argument('--num-images', type=int, default=4)
    parser.add_argument('--img-size', type=int, nargs='+', default=[224], metavar='S',
                        help='input size: S or H W (default: 224)')
    parser.add_argument('--out', default='erf.png', help='PNG path (the .npy goes next to it)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if len(args.img_size) not in (1, 2) or min(args.img_size) < 8:
        parser.error(f'--img-size takes one or two sizes >= 8, got {args.img_size}')
    if args.num_images < 1:
        parser.error('--num-images must be >= 1')
    if Path(args.out).suffix.lower() != '.png':
        parser.error(f'--out must be a .png path, got {args.out}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Run the tool on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    size = tuple(args.img_size * 2 if len(args.img_size) == 1 else args.img_size)
    try:
        model = init_model(args.config, args.checkpoint, device='cpu',
                           cfg_options=args.cfg_options)
        images = load_images(args.images, args.num_images, size, seed=args.seed)
        erf = effective_receptive_field(model, images, args.stage)
    except (FileNotFoundError, IndexError, TypeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out.with_suffix('.npy'), erf)
    name = Path(args.config).stem
    plot_erf(erf, out, title=f'{name} stage {args.stage} ({len(images)} {args.images} images)')
    ratios = high_contribution_area(erf)
    print('high-contribution area ratio: ' +
          ', '.join(f't={t:g}: {r:.3f}' for t, r in ratios.items()))
    print(f'ERF written to {out} and {out.with_suffix(".npy")}')
    return 0

