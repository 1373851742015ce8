"""Parameters and FLOPs of a config's model (mmengine analyzer, multiply-accumulates).

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] [--json OUT.json]

Classification models are counted on one 3xHxW image (default 224x224, the paper's setting),
detectors at 1280x800 and segmentors at 2048x512 (the paper's Table 3 conventions) unless
``--shape`` is given.
"""
import argparse
import importlib
import json
import sys

import torch
from mmengine.config import Config

from mmdwnet.analysis import count_flops, count_params
from mmdwnet.apis import init_model

DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (800, 1280), 'mmseg': (512, 2048)}
# scope -> module with ``model_flops(model, (H, W)) -> int`` for that toolbox's models
TASK_COUNTERS = {'mmdet': 'mmdwnet.analysis.det_flops', 'mmseg': 'mmdwnet.analysis.seg_flops'}


class _ClsTensor(torch.nn.Module):
    """``model(x, mode='tensor')`` as a plain module for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x, mode='tensor')


def model_complexity(config, shape=None):
    """Return dict(params=..., flops=..., shape=(H, W), scope=...) for ``config``."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    scope = cfg.get('default_scope', None)
    shape = tuple(shape or DEFAULT_SHAPES.get(scope, (224, 224)))
    model = init_model(cfg)
    if scope in TASK_COUNTERS:
        flops = importlib.import_module(TASK_COUNTERS[scope]).model_flops(model, shape)
    elif scope == 'mmpretrain':
        flops = count_flops(_ClsTensor(model), (3, *shape))
    else:  # a bare backbone
        flops = count_flops(model, (3, *shape))
    return dict(params=count_params(model), flops=flops, shape=shape, scope=scope)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width')
    parser.add_argument('--json', help='also write the numbers to this json file')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = model_complexity(args.config, args.shape)
    h, w = result['shape']
    print(f"{args.config}\n  input: 3x{h}x{w}\n  params: {result['params'] / 1e6:.2f} M\n"
          f"  flops:  {result['flops'] / 1e9:.2f} G (multiply-accumulates)")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(result, config=args.config), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
