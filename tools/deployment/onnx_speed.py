"""onnxruntime CPU speed against PyTorch eager for each preset (the table of docs/deployment.md).

    python tools/deployment/onnx_speed.py [--arch tiny] [--size 224] [--rounds 10]
        [--threads 1] [--exporter torchscript] [--presets DWNet SwinNet ...]

Each preset backbone (random weights, eval mode) is exported twice with the deployment tool's
exporter -- a standard-op graph and a graph whose mmdwnet operators are onnxruntime custom
nodes (:mod:`mmdwnet.deployment.ort_ops`; identical for presets without mmdwnet operators) --
both checked against PyTorch (max abs diff) and timed at batch 1: median milliseconds of
``--rounds`` forward passes after two warm-up passes, PyTorch (``torch.no_grad``) and the two
onnxruntime sessions (CPUExecutionProvider, all graph optimisations) alternating, all limited to
``--threads`` threads.  Prints a Markdown table.  Needs onnxruntime-extensions.
"""
import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch

from mmdwnet.deployment import onnx as tool
from mmdwnet.deployment import ort_ops
from mmdwnet.models.backbones import presets

PRESETS = ('DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
           'LocalMLPNet')


def _ms(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


GRAPHS = {'standard': False, 'custom': True}  # column -> custom_ops


def _session(net, x, exporter, threads, custom_ops):
    """(onnxruntime session of ``net``'s graph, max abs diff from PyTorch at ``x``)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    sess = ort_ops.inference_session(
        tool.export_onnx(net, x, exporter, dynamic=False, custom_ops=custom_ops), options)
    return sess, max(tool.compare(net, sess, [x]))


def _alternate(runs: Dict[str, Callable[[], None]], rounds: int) -> Dict[str, float]:
    """Median milliseconds of each run over ``rounds`` rounds of all runs in turn (so that all
    see the same machine load), after two warm-up rounds."""
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for r in range(rounds + 2):
        for k, run in runs.items():
            ms = _ms(run)
            if r >= 2:
                times[k].append(ms)
    return {k: statistics.median(t) for k, t in times.items()}


def measure(name, arch, size, rounds, threads, exporter):
    """(max abs diff per graph, median ms per runner: 'torch' and the GRAPHS)."""
    torch.manual_seed(0)
    net = tool.TensorOutputs(getattr(presets, name)(arch=arch, img_size=size, drop_path_rate=0.),
                        classifier=False).eval()
    x = torch.randn(1, 3, size, size)
    diffs, runs = {}, {}

    def run_torch():
        with torch.no_grad():
            net(x)

    runs['torch'] = run_torch
    for graph, custom_ops in GRAPHS.items():
        sess, diffs[graph] = _session(net, x, exporter, threads, custom_ops)
        feed = {sess.get_inputs()[0].name: x.numpy()}
        runs[graph] = lambda sess=sess, feed=feed: sess.run(None, feed)
    return diffs, _alternate(runs, rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--exporter', choices=('dynamo', 'torchscript'), default='torchscript')
    parser.add_argument('--presets', nargs='+', default=list(PRESETS), choices=PRESETS)
    args = parser.parse_args()
    ort_ops.require_extensions()
    torch.set_num_threads(args.threads)
    print(f'| preset ({args.arch}, 1x3x{args.size}x{args.size}) | PyTorch eager (ms) | '
          'onnxruntime, standard ops (ms) | onnxruntime, custom ops (ms) | '
          'PyTorch / standard | PyTorch / custom | max abs diff (standard, custom) |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name in args.presets:
        diffs, ms = measure(name, args.arch, args.size, args.rounds, args.threads,
                            args.exporter)
        print(f"| {name} | {ms['torch']:.1f} | {ms['standard']:.1f} | {ms['custom']:.1f} | "
              f"{ms['torch'] / ms['standard']:.2f} | {ms['torch'] / ms['custom']:.2f} | "
              f"{diffs['standard']:.1e}, {diffs['custom']:.1e} |", flush=True)


if __name__ == '__main__':
    main()
