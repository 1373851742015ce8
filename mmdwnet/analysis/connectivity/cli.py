"""Measure the paper's Table 1 properties of the spatial mixers by probing them numerically.

    python tools/analysis_tools/connectivity.py [--mixer CFG ...] [--only] [--out-dir DIR]
        [--channels 8] [--heads 2] [--size 14 14] [--cost-shape 96 56 56] [--cost-heads 3]

Every mixer registered in ``mmdwnet.models.mixers.MIXERS`` is probed with its default arguments
(one without the ``aggregation`` analysis hook is reported as not probed), plus the paper's variants (Table 2 Local MLP, shifted windows, Table 4
sharing ablations) and every ``--mixer`` config, given as ``"dict(type='DWConv',
kernel_size=5)"`` or JSON (``--only``: just those).  The measured table is printed; with
``--out-dir`` it is also written as ``connectivity.md``, ``connectivity.png`` (matplotlib
table), ``connectivity.json`` and ``relation_graph.png`` (paper Figure 3, drawn from the
measured properties).  See docs/analysis.md for what each column measures.

The command line of ``tools/analysis_tools/connectivity.py`` (a thin wrapper around
:func:`main`); the measurement is :mod:`.probes`, the presentation :mod:`.report`.
"""
import argparse
import sys
from typing import List, Optional

import mmdwnet  # noqa: F401  (registers the mixers)
from mmdwnet.analysis.connectivity.probes import (default_mixer_configs, parse_mixer_config,
                                                  probe_mixers)
from mmdwnet.analysis.connectivity.report import to_markdown, write_outputs

__all__ = ['parse_args', 'main']


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--mixer', action='append', default=[], metavar='CFG',
                        help="mixer config, e.g. \"dict(type='DWConv', kernel_size=5)\" or "
                        '\'{"type": "DWConv", "kernel_size": 5}\' (repeatable)')
    parser.add_argument('--only', action='store_true',
                        help='probe only the --mixer configs, not the registered mixers')
    parser.add_argument('--out-dir', help='write connectivity.{md,png,json} and '
                        'relation_graph.png here')
    parser.add_argument('--channels', type=int, default=8, help='probe channels C')
    parser.add_argument('--heads', type=int, default=2, help='probe heads (weight groups)')
    parser.add_argument('--size', type=int, nargs=2, default=[14, 14], metavar=('H', 'W'),
                        help='probe map size')
    parser.add_argument('--cost-shape', type=int, nargs=3, default=[96, 56, 56],
                        metavar=('C', 'H', 'W'),
                        help='shape for parameters/FLOPs (default: tiny stage 1)')
    parser.add_argument('--cost-heads', type=int, default=3, help='heads at --cost-shape')
    parser.add_argument('--no-cost', action='store_true', help='skip parameters/FLOPs')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.only and not args.mixer:
        parser.error('--only needs at least one --mixer config')
    try:
        args.mixer = [parse_mixer_config(text) for text in args.mixer]
    except ValueError as e:
        parser.error(str(e))
    if args.channels % args.heads:
        parser.error(f'--channels {args.channels} must be divisible by --heads {args.heads}')
    if min(args.size) < 2:
        parser.error(f'--size must be at least 2x2, got {args.size}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfgs = ([] if args.only else default_mixer_configs()) + args.mixer
    not_probed = []
    try:
        results = probe_mixers(
            cfgs, progress=True, not_probed=not_probed, channels=args.channels,
            num_heads=args.heads, size=args.size,
            cost_shape=None if args.no_cost else args.cost_shape, cost_heads=args.cost_heads,
            seed=args.seed)
    except (KeyError, ValueError, TypeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    for name, reason in not_probed:
        print(f'warning: not probed: {name}: {reason}', file=sys.stderr)
    print(to_markdown(results, not_probed))
    if args.out_dir:
        for kind, path in write_outputs(results, args.out_dir, not_probed=not_probed).items():
            print(f'{kind}: {path}')
    return 0

