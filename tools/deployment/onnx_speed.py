"""onnxruntime CPU speed against PyTorch eager for each preset (the table of docs/deployment.md).

    python tools/deployment/onnx_speed.py [--arch tiny] [--size 224] [--rounds 10]
        [--threads 1] [--exporter torchscript] [--presets DWNet SwinNet ...]

Each preset backbone (random weights, eval mode) is exported with the deployment tool's
exporter, checked against PyTorch (max abs diff) and timed at batch 1: median milliseconds of
``--rounds`` forward passes after two warm-up passes, PyTorch (``torch.no_grad``) and
onnxruntime (CPUExecutionProvider, all graph optimisations) alternating, both limited to
``--threads`` threads.  Prints a Markdown table.
"""
import argparse
import statistics
import time

import torch

from mmdwnet.deployment import onnx as tool
from mmdwnet.models.backbones import presets

PRESETS = ('DWNet', 'DynamicDWNet', 'IDynamicDWNet', 'SwinNet', 'SlidingWindowNet',
           'LocalMLPNet')


def _ms(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def measure(name, arch, size, rounds, threads, exporter):
    import onnxruntime as ort
    torch.manual_seed(0)
    net = tool.TensorOutputs(getattr(presets, name)(arch=arch, img_size=size, drop_path_rate=0.),
                        classifier=False).eval()
    x = torch.randn(1, 3, size, size)
    model_bytes = tool.export_onnx(net, x, exporter, dynamic=False)
    diff = max(tool.verify(net, model_bytes, [x]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    sess = ort.InferenceSession(model_bytes, options, providers=['CPUExecutionProvider'])
    feed = {sess.get_inputs()[0].name: x.numpy()}

    def run_torch():
        with torch.no_grad():
            net(x)

    def run_ort():
        sess.run(None, feed)

    for _ in range(2):
        run_torch()
        run_ort()
    t_torch, t_ort = [], []
    for _ in range(rounds):  # alternate so that both see the same machine load
        t_torch.append(_ms(run_torch))
        t_ort.append(_ms(run_ort))
    return diff, statistics.median(t_torch), statistics.median(t_ort)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--exporter', choices=('dynamo', 'torchscript'), default='torchscript')
    parser.add_argument('--presets', nargs='+', default=list(PRESETS), choices=PRESETS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'| preset ({args.arch}, 1x3x{args.size}x{args.size}) | PyTorch eager (ms) | '
          f'onnxruntime (ms) | PyTorch / onnxruntime | max abs diff |')
    print('|---|---:|---:|---:|---:|')
    for name in args.presets:
        diff, t_torch, t_ort = measure(name, args.arch, args.size, args.rounds, args.threads,
                                       args.exporter)
        print(f'| {name} | {t_torch:.1f} | {t_ort:.1f} | {t_torch / t_ort:.2f} | {diff:.1e} |',
              flush=True)


if __name__ == '__main__':
    main()
