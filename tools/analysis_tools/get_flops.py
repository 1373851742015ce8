"""Parameters and FLOPs of a config's model (mmengine analyzer, multiply-accumulates).

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--convention {all,modules}]
        [--json OUT.json]

Counted at the config's input size (:func:`mmdwnet.analysis.model_complexity.input_shape`):
classifiers at the crop their test pipeline evaluates (224x224, 384x384 for the fine-tuned
models; the train crop for pre-training configs without a test set), detectors at 1280x800 and
segmentors at 2048x512 (the paper's Table 3 conventions).  ``--shape`` overrides it.

``--convention modules`` counts what a module-hook counter (ptflops, mmcv 1.x) sees, leaving
out the products of two activations (attention ``q @ k^T`` / ``attn @ v``, dynamic kernels):
the convention of figures such as Twins' model zoo.  The default, ``all``, counts every product,
as the official code's ``flops()`` does (see :mod:`mmdwnet.analysis.complexity`).
"""
import argparse
import json
import sys

import torch

from mmdwnet.analysis.complexity import CONVENTIONS
from mmdwnet.utils.fileio import atomic_open
from mmdwnet.analysis.model_complexity import DEFAULT_SHAPES, model_complexity  # noqa: F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input height and width (default: the config's input size)")
    parser.add_argument('--convention', choices=CONVENTIONS, default='all',
                        help="'all': every product (default, the paper's counts); 'modules': "
                        'only what a module-hook counter sees (no attention products)')
    parser.add_argument('--json', help='also write the numbers to this json file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = model_complexity(args.config, args.shape, args.convention)
    h, w = result['shape']
    counted = '' if args.convention == 'all' else f', {args.convention} convention'
    print(f"{args.config}\n  input: 3x{h}x{w}\n  params: {result['params'] / 1e6:.2f} M\n"
          f"  flops:  {result['flops'] / 1e9:.2f} G (multiply-accumulates{counted})")
    if args.json:
        with atomic_open(args.json) as f:
            json.dump(dict(result, config=args.config, convention=args.convention), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
