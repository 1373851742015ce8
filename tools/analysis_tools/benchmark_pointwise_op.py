"""Time the compiled CPU I-D-DW op (``local_aggregate_pointwise``, forward and backward) at the
shapes the presets run: the digits demo's nano stages (batch 64, 32 px), Tiny's stages (batch 8,
224 px) and Tiny's first detection stage (one 800x1344 image).

    python tools/analysis_tools/benchmark_pointwise_op.py [--threads 2] [--rounds 7] [--json F]
        [--only SHAPE ...]

Prints a table of the best time of ``--rounds`` calls (milliseconds).  To compare two versions
of the kernels, run it under each checkout (``PYTHONPATH=<checkout>``) alternately, on an idle
machine; ``docs/ops.md`` records such a comparison.
"""
import argparse
import json
import sys
import time
from typing import Callable, Dict

import torch

#: name -> (N, C, R, H, W); G = 32 groups, k = 7 in every preset
SHAPES = {
    'nano stage 1': (64, 32, 8, 8, 8),
    'nano stage 2': (64, 64, 16, 4, 4),
    'nano stage 3': (64, 128, 32, 2, 2),
    'nano stage 4': (64, 256, 64, 1, 1),
    'Tiny stage 1': (8, 96, 24, 56, 56),
    'Tiny stage 2': (8, 192, 48, 28, 28),
    'Tiny stage 3': (8, 384, 96, 14, 14),
    'Tiny stage 4': (8, 768, 192, 7, 7),
    'detection stage 1': (1, 96, 24, 200, 336),
}
GROUPS, KERNEL = 32, 7


def best_ms(fn: Callable[[], object], rounds: int) -> float:
    """Best wall time of ``rounds`` calls after one warm-up call, in milliseconds."""
    fn()
    best = float('inf')
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def measure(rounds: int, names=tuple(SHAPES)) -> Dict[str, Dict[str, float]]:
    from mmdwnet.ops.backends import cpu
    if not cpu.available():
        sys.exit('error: the compiled CPU kernels are unavailable (no C compiler?)')
    results = {}
    for name in names:
        n, c, r, h, w = SHAPES[name]
        gen = torch.Generator().manual_seed(0)
        x, feat, grad = (torch.randn(n, ch, h, w, generator=gen) for ch in (c, r, c))
        w2d = torch.randn(GROUPS * KERNEL**2, r, generator=gen) * 0.1
        bias = torch.randn(GROUPS * KERNEL**2, generator=gen) * 0.1
        reps = max(1, rounds // 2) if n * h * w > 50000 else rounds
        results[name] = dict(
            shape=f'{n}x{c}x{h}x{w}, R {r}',
            forward=best_ms(lambda: cpu.aggregate_pointwise(x, feat, w2d, bias, GROUPS, KERNEL),
                            reps),
            backward=best_ms(lambda: cpu.aggregate_pointwise_backward(
                grad, x, feat, w2d, bias, GROUPS, KERNEL), reps))
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--rounds', type=int, default=7, help='timed calls (best is kept)')
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--only', nargs='+', choices=list(SHAPES), default=list(SHAPES),
                        metavar='SHAPE', help=f'measure only these shapes ({", ".join(SHAPES)})')
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1:
        parser.error('--threads and --rounds must be at least 1')
    torch.set_num_threads(args.threads)
    results = measure(args.rounds, args.only)
    print(f'| shape | forward (ms) | backward (ms) |  ({args.threads} threads, best of '
          f'{args.rounds})\n|---|---:|---:|')
    for name, r in results.items():
        print(f'| {name}, {r["shape"]} | {r["forward"]:.2f} | {r["backward"]:.2f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
