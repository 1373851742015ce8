"""The command lines of ``tools/analysis_tools/benchmark.py`` (:func:`main`: ``make bench``,
``make bench-gpu``) and ``benchmark_compile_train.py`` (:func:`compile_train_main`: ``make
bench-compile``): argument parsing and the order of the steps; what they measure and write is
told in those tools' docstrings and in docs/benchmark*.md.
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch

from . import measure, report, roofline, suites

DEFAULTS = {  # per device: --batch, --op-shape, --iters
    'cpu': dict(batch=[8], op_shape=[8, 96, 56, 56], iters=1),
    'cuda': dict(batch=[64, 128], op_shape=[64, 96, 56, 56], iters=10),
}
QUICK_ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])


def parse_args(argv=None, suite=None):
    suite = suite or suites.load_suite()
    names = list(suite['models'])
    p = argparse.ArgumentParser(description='Speed / memory benchmark of the paper\'s Table 2 '
                                'tiny models against mmpretrain\'s Swin-T.')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    p.add_argument('--out', default=None, help='report (default docs/benchmark.md; CUDA: '
                   'docs/benchmark_gpu.md)')
    p.add_argument('--models', nargs='+', default=suite['bench_models'], choices=names,
                   help='models of the legacy tables (the reference is always added)')
    p.add_argument('--rounds', type=int, default=7, help='interleaved timed rounds')
    p.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    p.add_argument('--batch', type=int, nargs='+', default=None,
                   help='batch size (CPU: one, default 8; CUDA: one or more, default 64 128)')
    p.add_argument('--iters', type=int, default=None, help='CUDA: calls per timed sample')
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    p.add_argument('--arch', type=json.loads, default=None,
                   help='JSON arch dict for every model (quick tests)')
    for flag, what in (('train', 'training steps'), ('unfused', 'unfused inference'),
                       ('plain', 'inference with the dense fast path off'),
                       ('batch1', 'batch-1 inference'), ('memory', 'peak memory'),
                       ('flops', 'FLOP counting'), ('ops', 'the aggregation op section'),
                       ('roofline', 'the roofline section')):
        p.add_argument(f'--no-{flag}', action='store_true', help=f'skip {what}')
    p.add_argument('--roofline-only', action='store_true', help='only the roofline section, '
                   'spliced into --out (the rest of the file is kept)')
    p.add_argument('--roofline-rounds', type=int, default=3)
    p.add_argument('--roofline-models', nargs='+', default=None, choices=names,
                   help='roofline models (default: the suite\'s roofline.models)')
    p.add_argument('--quick', action='store_true', help='roofline on a tiny model at 32 px '
                   '(seconds; for tests)')
    p.add_argument('--channels-last', action='store_true', help='also channels-last inputs')
    p.add_argument('--compile', action='store_true', help='also torch.compile(model) rows')
    p.add_argument('--json', default=None, help='also dump the raw measurements here')
    p.add_argument('--op-shape', type=int, nargs=4, default=None, metavar=('N', 'C', 'H', 'W'))
    p.add_argument('--op-groups', type=int, default=32)
    p.add_argument('--op-kernel', type=int, default=7)
    p.add_argument('--op-rounds', type=int, default=3)
    args = p.parse_args(argv)
    args.command = 'python tools/analysis_tools/benchmark.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    d = DEFAULTS[args.device]
    args.batches, args.op_shape = args.batch or d['batch'], args.op_shape or d['op_shape']
    args.iters = args.iters or d['iters']
    args.out = args.out or f'docs/benchmark{"_gpu" if args.device == "cuda" else ""}.md'
    if args.rounds < 1:
        p.error('--rounds must be >= 1')
    if args.roofline_rounds < 1:
        p.error('--roofline-rounds must be >= 1')
    if min(args.batches) < 1 or args.threads < 1 or args.iters < 1:
        p.error('--batch, --threads and --iters must be >= 1')
    if args.device == 'cpu' and len(args.batches) != 1:
        p.error('--batch takes one value on CPU (several only with --device cuda)')
    if args.device == 'cuda' and (args.roofline_only or args.quick):
        p.error('--roofline-only and --quick are CPU-only (the roofline is a CPU section)')
    if args.roofline_only and args.no_roofline:
        p.error('--roofline-only and --no-roofline contradict each other')
    args.batch = args.batches[0]
    args.models = list(dict.fromkeys(list(args.models) + [suite['reference']]))
    return args


def require_cuda():
    """Refuse ``--device cuda`` without a CUDA device (before anything runs or is written)."""
    if not torch.cuda.is_available():
        sys.exit('benchmark.py --device cuda: no CUDA device is visible '
                 '(torch.cuda.is_available() is False), so there is nothing to measure; no '
                 'report was written. Run it on a machine with an NVIDIA GPU.')


def main(argv=None):
    suite = suites.load_suite()
    args = parse_args(argv, suite)
    if args.device == 'cuda':
        require_cuda()
        torch.backends.cudnn.benchmark = True
        t0 = time.perf_counter()
        runs = measure.run_gpu(args, suite)
        ops = None if args.no_ops else measure.gpu_op_benchmark(args)
        out = report.write_gpu_report(runs, ops, args, time.perf_counter() - t0, suite)
        dump = dict(runs=runs, ops=ops)
    else:
        torch.set_num_threads(args.threads)
        dump = {}
        if not args.roofline_only:
            dump = measure.run(args, suite)
            out, png = report.write_report(dump, args, suite)
            print(f'wrote {out} and {png}')
        if not args.no_roofline:
            quick = args.quick or args.arch is not None
            rsuite = roofline.quick_suite(suite) if args.quick else suite
            dump['roofline'] = res = roofline.run_roofline(
                rsuite, args.roofline_rounds, arch=QUICK_ARCH if args.quick else args.arch,
                models=args.roofline_models, quick_peak=quick)
            report.write_section(args.out, report.roofline_section(res, rsuite, args.command),
                                 report.ROOFLINE_BEGIN, report.ROOFLINE_END)
        out = args.out
    if args.json:
        report.write_text(args.json, [json.dumps(dump, indent=1, default=str)])
    print(f'wrote {out}')



def parse_compile_train_args(argv=None):
    parser = argparse.ArgumentParser(description='Training-step speed with the backbone '
                                     'compiled (CompileModulesHook\'s way) against eager.')
    parser.add_argument('--configs', nargs='+', default=[
        'configs/classification/dwnet-tiny_8xb128_in1k.py',
        'configs/classification/i-dynamic-dwnet-tiny_8xb128_in1k.py'])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=3, help='timed rounds per variant')
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--backend', default='inductor', help='torch.compile backend')
    parser.add_argument('--out', help='markdown file to write the section into')
    return parser.parse_args(argv)


def compile_train_main(argv=None):
    args = parse_compile_train_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = {}
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0]
        print(f'measuring {name} ...', flush=True)
        rows[name] = measure.measure_compiled_training(config, args.batch, args.img_size,
                                                       args.rounds, args.backend)
    text = report.compile_train_section(rows, args, time.time() - start)
    print(text)
    if args.out:
        report.write_section(args.out, text, report.COMPILE_BEGIN, report.COMPILE_END)
        print(f'wrote the section into {args.out}', file=sys.stderr)

