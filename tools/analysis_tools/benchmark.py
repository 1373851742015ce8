"""Speed / memory benchmark of the paper's Table 2 tiny models against mmpretrain's Swin-T.

    python tools/analysis_tools/benchmark.py --out docs/benchmark.md      (``make bench``)
    python tools/analysis_tools/benchmark.py --models dwnet swin --rounds 3 --no-train --out /tmp/b.md

What is measured, in one process (CPU, ``--threads`` intra-op threads):

* every model is an mmpretrain ``ImageClassifier`` (backbone + ``GlobalAveragePooling`` +
  ``LinearClsHead``, 1000 classes), ours built from ``configs/classification/*-tiny_*.py``, the
  reference from mmpretrain's own ``SwinTransformer(arch='tiny')``;
* inference images/s (``mode='tensor'``, ``torch.no_grad``) at ``--batch`` and at batch 1, after
  ``mmcv.cnn.fuse_conv_bn`` (the deploy step) and without it, and with the CPU inference fast path
  of the dense layers (:mod:`mmdwnet.ops.dense`) switched off ("plain modules"); one training
  step (loss forward, backward, AdamW step) at ``--batch``;
* the same ratios relative to mmdwnet's own Swin-T, which shares every layer but the mixer with
  the other models (the paper's comparison);
* models are interleaved: each round runs every model once per setting, after a warm-up round;
  the headline is the median over rounds of the per-round ratio to the reference (robust to a
  shared machine's load swings), with min-max spreads;
* peak memory: the peak of bytes allocated through torch's CPU allocator during one inference
  / training step above the level at its start (``torch.profiler`` with ``profile_memory``);
* FLOPs: :func:`mmdwnet.analysis.count_flops` (multiply-accumulates, one 224x224 image);
* the I-D-DW aggregation op (``mmdwnet.ops.local_aggregate``) against its ``F.unfold``
  formulation at the tiny model's stage-1 shape, forward and forward+backward.

Writes a markdown report and a bar chart (``<out stem>.png`` beside it).
"""
import argparse
import copy
import datetime
import json
import os
import os.path as osp
import platform
import re
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# name -> (label, config file or None for the reference)
MODELS = {
    'dwnet': ('DWNet-T (DW-Conv)', 'dwnet-tiny_8xb128_in1k.py'),
    'dynamic-dwnet': ('D-DWNet-T (D-DW-Conv)', 'dynamic-dwnet-tiny_8xb128_in1k.py'),
    'i-dynamic-dwnet': ('I-D-DWNet-T (I-D-DW-Conv)', 'i-dynamic-dwnet-tiny_8xb128_in1k.py'),
    'swin': ('Swin-T (mmdwnet SwinNet)', 'swin-tiny_8xb128_in1k.py'),
    'local-mlp': ('Local MLP-T (mmdwnet LocalMLPNet)', 'local-mlp-tiny_8xb128_in1k.py'),
    'i-dynamic-dwnet-torch': ('I-D-DWNet-T, pure-PyTorch ops', 'i-dynamic-dwnet-tiny_8xb128_in1k.py'),
    'mmpretrain-swin': ('Swin-T (mmpretrain SwinTransformer, reference)', None),
}
# Variants run with the compiled CPU kernels switched off (MMDWNET_OPS_BACKEND=torch).
TORCH_BACKEND = {'i-dynamic-dwnet-torch'}
REFERENCE = 'mmpretrain-swin'
# The same macro architecture with Swin's mixer: the paper's own baseline.
ARCH_REFERENCE = 'swin'
# Targets of issue 7: inference ratio (batch 8, fused) to the reference.
TARGETS = {'dwnet': 1.5, 'dynamic-dwnet': 1.4, 'i-dynamic-dwnet': 1.0, 'swin': 1.0}
# Paper Table 2 (V100 throughput relative to Swin-T).
PAPER = {'dwnet': 1.30, 'dynamic-dwnet': 1.26, 'i-dynamic-dwnet': 0.96, 'swin': 1.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='docs/benchmark.md', help='markdown report to write')
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS),
                        help='models to measure (the reference is always added)')
    parser.add_argument('--rounds', type=int, default=7, help='interleaved timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--batch', type=int, default=8, help='batch size')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
    parser.add_argument('--arch', type=json.loads, default=None,
                        help='JSON arch dict for every model, e.g. \'{"embed_dims": 16, '
                        '"depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8]}\' (quick tests)')
    parser.add_argument('--no-train', action='store_true', help='skip training steps')
    parser.add_argument('--no-unfused', action='store_true', help='skip unfused inference')
    parser.add_argument('--no-plain', action='store_true',
                        help='skip inference with the dense fast path off (plain modules)')
    parser.add_argument('--no-batch1', action='store_true', help='skip batch-1 inference')
    parser.add_argument('--no-memory', action='store_true', help='skip peak memory')
    parser.add_argument('--no-flops', action='store_true', help='skip FLOP counting')
    parser.add_argument('--no-ops', action='store_true', help='skip the aggregation op section')
    parser.add_argument('--channels-last', action='store_true',
                        help='also time inference on channels-last inputs (extra rows)')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile(model) inference (extra rows; compiling '
                        'takes minutes on a small CPU)')
    parser.add_argument('--json', default=None, help='also dump the raw measurements here')
    parser.add_argument('--op-shape', type=int, nargs=4, default=[8, 96, 56, 56],
                        metavar=('N', 'C', 'H', 'W'), help='aggregation op input shape')
    parser.add_argument('--op-groups', type=int, default=32)
    parser.add_argument('--op-kernel', type=int, default=7)
    parser.add_argument('--op-rounds', type=int, default=3)
    args = parser.parse_args(argv)
    args.command = 'python tools/analysis_tools/benchmark.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    if args.rounds < 1:
        parser.error('--rounds must be >= 1')
    if args.batch < 1 or args.threads < 1:
        parser.error('--batch and --threads must be >= 1')
    if REFERENCE not in args.models:
        args.models = list(args.models) + [REFERENCE]
    return args


# ---------------------------------------------------------------------------- models
def model_cfg(name, args):
    from mmengine.config import Config
    label, cfg_file = MODELS[name]
    if cfg_file is None:
        cfg = dict(
            type='ImageClassifier',
            backbone=dict(type='SwinTransformer', arch='tiny', img_size=args.img_size,
                          drop_path_rate=0.2),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=768,
                      loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))
    else:
        cfg = Config.fromfile(osp.join(REPO, 'configs', 'classification', cfg_file)).model
        cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
        cfg.pop('train_cfg', None)  # Mixup/CutMix live in the data preprocessor; not timed
        cfg['backbone']['img_size'] = args.img_size
    cfg = copy.deepcopy(cfg)
    if args.arch is not None:
        cfg['backbone']['arch'] = dict(args.arch)
        cfg['head']['in_channels'] = args.arch['embed_dims'] * 2**(len(args.arch['depths']) - 1)
    return cfg


def build(name, args, fused):
    from mmcv.cnn import fuse_conv_bn
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = PRETRAIN_MODELS.build(model_cfg(name, args))
    model.eval()
    if fused:
        fuse_conv_bn(model)
    return model


def make_samples(batch):
    from mmpretrain.structures import DataSample
    return [DataSample().set_gt_label(i % 1000) for i in range(batch)]


# ---------------------------------------------------------------------------- measuring
def peak_alloc_mib(fn):
    """Peak MiB allocated through torch's CPU allocator while ``fn()`` runs, above the level
    at its start (``torch.profiler`` memory events, summed in time order)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
    cur = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak / 2**20


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Runner:
    """The callables to time for one model."""

    def __init__(self, name, args):
        self.name, self.args = name, args
        self.fused = build(name, args, fused=True)
        self.unfused = None if args.no_unfused else build(name, args, fused=False)
        self.train_model = None if args.no_train else build(name, args, fused=False)
        if self.train_model is not None:
            self.train_model.train()
            self.optim = torch.optim.AdamW(self.train_model.parameters(), lr=1e-4,
                                           weight_decay=0.05)
        self.x = torch.randn(args.batch, 3, args.img_size, args.img_size)
        self.x1 = self.x[:1].clone()
        self.samples = make_samples(args.batch)
        self.compiled = torch.compile(self.fused) if args.compile else None
        self.x_cl = self.x.contiguous(memory_format=torch.channels_last)

    def infer(self, model, x, fast=True):
        from mmdwnet.ops.dense import fast_inference
        with torch.no_grad(), fast_inference(fast):
            model(x, mode='tensor')

    def settings(self):
        """setting name -> (callable, images per call)."""
        s = {'infer': (lambda: self.infer(self.fused, self.x), self.args.batch)}
        s = self._all(s)
        return {k: (self._backend(f), n) for k, (f, n) in s.items()}

    def _backend(self, fn):
        if self.name not in TORCH_BACKEND:
            return fn

        def wrapped():
            old = os.environ.get('MMDWNET_OPS_BACKEND')
            os.environ['MMDWNET_OPS_BACKEND'] = 'torch'
            try:
                return fn()
            finally:
                if old is None:
                    os.environ.pop('MMDWNET_OPS_BACKEND')
                else:
                    os.environ['MMDWNET_OPS_BACKEND'] = old
        return wrapped

    def _all(self, s):
        if self.unfused is not None:
            s['infer_unfused'] = (lambda: self.infer(self.unfused, self.x), self.args.batch)
        if not self.args.no_plain:
            s['infer_plain'] = (lambda: self.infer(self.fused, self.x, fast=False),
                                self.args.batch)
        if not self.args.no_batch1:
            s['infer_b1'] = (lambda: [self.infer(self.fused, self.x1) for _ in range(3)], 3)
        if self.args.channels_last:
            s['infer_cl'] = (lambda: self.infer(self.fused, self.x_cl), self.args.batch)
        if self.compiled is not None:
            s['infer_compiled'] = (lambda: self.infer(self.compiled, self.x), self.args.batch)
        if self.train_model is not None:
            s['train'] = (self.train_step, self.args.batch)
        return s

    def train_step(self):
        self.optim.zero_grad(set_to_none=True)
        losses = self.train_model(self.x, self.samples, mode='loss')
        sum(v for v in losses.values() if isinstance(v, torch.Tensor)).backward()
        self.optim.step()


def op_benchmark(args, progress=None):
    """local_aggregate vs local_aggregate_unfold (and the old per-offset 2-D loop)."""
    from mmdwnet.ops import local_aggregate
    from mmdwnet.ops.backends.reference import local_aggregate_unfold
    n, c, h, w = args.op_shape
    k, g = args.op_kernel, args.op_groups
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    # kernels at the scale of generated ones (outputs of unit scale)
    weight = (torch.randn(n, g, k, k, h, w) / k).requires_grad_()
    grad = torch.randn(n, c, h, w)
    def torch_backend(x, w):
        os.environ['MMDWNET_OPS_BACKEND'] = 'torch'
        try:
            return local_aggregate(x, w)
        finally:
            os.environ.pop('MMDWNET_OPS_BACKEND')

    impls = {'local_aggregate': local_aggregate,
             'local_aggregate (pure PyTorch)': torch_backend,
             'local_aggregate_unfold': local_aggregate_unfold}

    def fwd(f):
        with torch.no_grad():
            f(x, weight)

    def fwd_bwd(f):
        x.grad = weight.grad = None
        f(x, weight).backward(grad)
        x.grad = weight.grad = None

    with torch.no_grad():
        y0 = local_aggregate(x, weight)
        y1 = local_aggregate_unfold(x, weight)
    err = (y0 - y1).abs().max().item()
    res = {name: dict(fwd=[], fwd_bwd=[]) for name in impls}
    for name, f in impls.items():  # warm-up
        fwd_bwd(f)
    for _ in range(args.op_rounds):
        for name, f in impls.items():
            res[name]['fwd'].append(timed(lambda: fwd(f)))
            res[name]['fwd_bwd'].append(timed(lambda: fwd_bwd(f)))
            if progress is not None:
                progress.update()
    for name, f in impls.items():
        res[name]['mem_fwd'] = None if args.no_memory else peak_alloc_mib(lambda: fwd(f))
        res[name]['mem_fwd_bwd'] = None if args.no_memory else peak_alloc_mib(
            lambda: fwd_bwd(f))
    return dict(shape=[n, c, h, w], kernel=k, groups=g, max_abs_diff=err, results=res)


def run(args):
    from mmengine.utils import ProgressBar

    import mmdwnet  # noqa: F401  (registers the models)
    from mmdwnet.analysis import count_flops, count_params
    torch.set_num_threads(args.threads)
    names = list(dict.fromkeys(args.models))
    runners = {name: Runner(name, args) for name in names}
    settings = {name: r.settings() for name, r in runners.items()}
    per_round = sum(len(s) for s in settings.values())
    total = per_round * (args.rounds + args.warmup) + (0 if args.no_ops else
                                                       args.op_rounds * 3)
    progress = ProgressBar(total)
    times = {name: {s: [] for s in settings[name]} for name in names}
    t0 = time.perf_counter()
    for r in range(args.warmup + args.rounds):
        for name in names:
            for setting, (fn, images) in settings[name].items():
                seconds = timed(fn)
                if r >= args.warmup:
                    times[name][setting].append(images / seconds)
                progress.update()
    ops = None if args.no_ops else op_benchmark(args, progress)
    sys.stdout.write('\n')
    info = dict(models={}, seconds=time.perf_counter() - t0)
    for name, runner in runners.items():
        entry = dict(label=MODELS[name][0], throughput=times[name],
                     params=count_params(runner.fused) / 1e6)
        if not args.no_flops:
            entry['flops'] = count_flops(runner.unfused or build(name, args, False),
                                         (3, args.img_size, args.img_size)) / 1e9
        if not args.no_memory:
            entry['mem_infer'] = peak_alloc_mib(settings[name]['infer'][0])
            if 'train' in settings[name]:
                entry['mem_train'] = peak_alloc_mib(settings[name]['train'][0])
        info['models'][name] = entry
    info['ops'] = ops
    from mmdwnet.ops.backends import _common as local_aggregation
    buf = getattr(local_aggregation._workspace, 'buf', None)
    info['workspace_mib'] = 0 if buf is None else buf.numel() * buf.element_size() / 2**20
    return info


# ---------------------------------------------------------------------------- report
def ratio_stats(info, name, setting, reference=REFERENCE):
    if reference not in info['models']:
        return None
    ours = info['models'][name]['throughput'].get(setting)
    ref = info['models'][reference]['throughput'].get(setting)
    if not ours or not ref:
        return None
    ratios = [a / b for a, b in zip(ours, ref)]
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt_speed(values):
    if not values:
        return 'n/a'
    return f'{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})'


def fmt_ms(values):
    return f'{statistics.median(values) * 1e3:.0f} ({min(values) * 1e3:.0f}-{max(values) * 1e3:.0f})'


def fmt_ratio(stats):
    if stats is None:
        return 'n/a'
    return f'**{stats[0]:.2f}x** ({stats[1]:.2f}-{stats[2]:.2f})'


def machine_lines(args):
    import mmcv
    import mmengine
    import mmpretrain
    cpu = platform.processor() or 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = re.search(r'model name\s*:\s*(.*)', f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return [
        f'- Machine: {platform.system()} {platform.machine()}, CPU "{cpu}", '
        f'{os.cpu_count()} logical cores, shared with other jobs while measuring.',
        f'- Threads: torch intra-op threads = {args.threads} (`torch.set_num_threads`); '
        'no GPU.',
        f'- Versions: Python {platform.python_version()}, torch {torch.__version__}, mmcv '
        f'{mmcv.__version__}, mmengine {mmengine.__version__}, mmpretrain '
        f'{mmpretrain.__version__}.',
        f'- Settings: batch {args.batch}, {args.img_size}x{args.img_size}, float32, '
        f'{args.warmup} warm-up + {args.rounds} timed rounds, models interleaved in every round.',
    ]


def write_report(info, args):
    out = args.out
    png = osp.splitext(out)[0] + '.png'
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    names = list(info['models'])
    settings = [s for s in ('infer', 'infer_unfused', 'infer_plain', 'infer_b1', 'infer_cl',
                            'infer_compiled', 'train')
                if any(s in info['models'][n]['throughput'] for n in names)]
    titles = dict(infer=f'inference b{args.batch} (fused)',
                  infer_unfused=f'inference b{args.batch} (unfused)',
                  infer_plain=f'inference b{args.batch} (fused, plain modules)',
                  infer_b1='inference b1',
                  infer_cl=f'inference b{args.batch} channels-last',
                  infer_compiled=f'inference b{args.batch} torch.compile',
                  train=f'train step b{args.batch}')
    lines = ['# Speed and memory benchmark', '',
             f'Written by `{args.command}` on '
             f'{datetime.date.today().isoformat()} in {info["seconds"]:.0f} s.', '']
    lines += machine_lines(args)
    lines += [
        '- Models: mmpretrain `ImageClassifier` = backbone + `GlobalAveragePooling` + '
        '`LinearClsHead` (1000 classes), ours from `configs/classification/*-tiny_*.py`, the '
        "reference built from mmpretrain's `SwinTransformer(arch='tiny')`. Fused = after "
        '`mmcv.cnn.fuse_conv_bn` (the deploy step; the reference has no conv-BN pair).',
        '- Ratios are the median over rounds of (model images/s) / (reference images/s) '
        'measured in the same round; parentheses give min-max over rounds.',
        '- Inference runs, as deployed, with the CPU fast path of the dense layers '
        '(`mmdwnet.ops.dense`: oneDNN matrix products with fused bias/GELU, the FFN in '
        'cache-sized row chunks, the pre-FFN BN folded into fc1); "plain modules" columns switch '
        'it off (`MMDWNET_FAST_INFERENCE=0`) and run the same models as ordinary PyTorch modules. '
        'The reference has no such path.',
        '- Peak memory: peak of the bytes allocated through torch\'s CPU allocator during one '
        'call above the level at its start (`torch.profiler`, `profile_memory=True`); includes '
        'activations and (training) gradients, not parameters or AdamW state that exist before '
        f'the step. I-D-DW also keeps a reused kernel workspace of {info.get("workspace_mib", 0):.0f}'
        ' MiB per thread (allocated once, not counted per call).',
        '- Not measured: GPU throughput and memory (no GPU on this machine); the paper\'s '
        'numbers are V100 GPU throughputs and are quoted for comparison only.', '',
        f'![throughput ratios]({osp.basename(png)})', '',
        '## Throughput relative to mmpretrain Swin-T', '']
    head = '| model | ' + ' | '.join(titles[s] for s in settings) + ' | paper (V100) |'
    lines += [head, '|' + ' --- |' * (len(settings) + 2)]
    for n in names:
        row = [info['models'][n]['label']]
        row += [fmt_ratio(ratio_stats(info, n, s)) for s in settings]
        row.append(f'{PAPER[n]:.2f}x' if n in PAPER else '')
        lines.append('| ' + ' | '.join(row) + ' |')
    arch = [s for s in settings if s != 'train' and ratio_stats(info, names[0], s,
                                                                  ARCH_REFERENCE)]
    if arch:  # empty when the run has no mmdwnet Swin-T
        lines += ['', '## Throughput relative to mmdwnet Swin-T (same implementation, only the '
                  'mixer differs)', '',
                  'The paper\'s comparison: every model below shares the patch embedding, '
                  'patch merging, FFN, head and their implementation with mmdwnet\'s Swin-T, so '
                  'these ratios are those of the spatial mixers alone.', '',
                  '| model | ' + ' | '.join(titles[s] for s in arch) + ' | paper (V100) |',
                  '|' + ' --- |' * (len(arch) + 2)]
        for n in names:
            if n in (ARCH_REFERENCE, REFERENCE):
                continue
            row = [info['models'][n]['label']]
            row += [fmt_ratio(ratio_stats(info, n, s, ARCH_REFERENCE)) for s in arch]
            row.append(f'{PAPER[n]:.2f}x' if n in PAPER else '')
            lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', '## Absolute numbers (images/s: median (min-max)), FLOPs, memory', '',
              '| model | params (M) | FLOPs (G) | ' + ' | '.join(titles[s] for s in settings)
              + ' | peak mem inference (MiB) | peak mem train step (MiB) |',
              '|' + ' --- |' * (len(settings) + 5)]
    for n in names:
        m = info['models'][n]
        flops = f'{m["flops"]:.2f}' if 'flops' in m else 'n/a'
        mem_i = f'{m["mem_infer"]:.0f}' if m.get('mem_infer') is not None else 'n/a'
        mem_t = f'{m["mem_train"]:.0f}' if m.get('mem_train') is not None else 'n/a'
        row = [m['label'], f'{m["params"]:.2f}', flops]
        row += [fmt_speed(m['throughput'].get(s)) for s in settings]
        row += [mem_i, mem_t]
        lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', '## Targets (inference, batch %d, fused, ratio to the reference)' % args.batch,
              '', '| model | target | measured (median, min-max) | met | plain modules '
              '(fast path off) |', '| --- | --- | --- | --- | --- |']
    for n, target in TARGETS.items():
        stats = ratio_stats(info, n, 'infer') if n in info['models'] else None
        if stats is None:
            continue
        plain = ratio_stats(info, n, 'infer_plain')
        plain = f'{plain[0]:.2f}x' if plain else 'n/a'
        lines.append(f'| {info["models"][n]["label"]} | >= {target:.2f}x | {stats[0]:.2f}x '
                     f'({stats[1]:.2f}-{stats[2]:.2f}) | {"yes" if stats[0] >= target else "**no**"}'
                     f' | {plain} |')
    ops = info.get('ops')
    if ops:
        lines += op_lines(ops)
    lines += NOTES
    with open(out, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    plot(info, settings, titles, png)
    return out, png


NOTES = [
    '', '## How the speed is obtained (and switches)', '',
    '- Dense layers (every model, `mmdwnet/ops/dense.py`): in CPU inference (eval mode, no '
    'autograd recording, float32, not while tracing) each block computes `x + FFN(norm2(x))` '
    'with oneDNN matrix products (`torch.ops.mkldnn._linear_pointwise`, the op `torch.compile` '
    'emits for CPU linears) that fuse the bias and the GELU, over row chunks of about 4 MiB of '
    'hidden activations that stay in cache, with an eval BatchNorm before the FFN folded into '
    'fc1; qkv/value/output projections and patch merging use the same matrix product. Two costs '
    'of the plain modules go away: PyTorch\'s float32 `addmm` (MKL) runs 2-2.5x slower than '
    'oneDNN on this AVX-512 CPU for these shapes, and the 38 MiB (B*H*W, 4C) hidden tensors of '
    'stage 1 are fresh allocations above glibc\'s mmap threshold whose page faults cost about '
    'as much as the products. The reference runs as mmpretrain builds it. '
    '`MMDWNET_FAST_INFERENCE=0` (or `with mmdwnet.ops.dense.fast_inference(False)`) switches '
    'the path off: the "plain modules" columns. Outputs agree with the module path within '
    '1e-5 (tests/test_dense_fast_path.py, tests/test_reference.py).',
    '- I-D-DW: `mmdwnet.ops.local_aggregate_pointwise` fuses the kernel generator\'s last 1x1 '
    'conv with the aggregation: the (N, G*k*k, H, W) kernels (16x the input at stage 1) are made '
    'a few images at a time into a reused buffer (recomputed in the backward pass) instead of '
    'being allocated for the whole batch.',
    '- The aggregation primitives (`local_aggregate`, its two transposes, `local_correlate`) run, '
    'on CPU float32, as small C/OpenMP kernels (`mmdwnet/ops/cpu_kernels.py`: plain C, no '
    'PyTorch headers, built once with the system C compiler in about a second into '
    '`~/.cache/mmdwnet/ops`, also by `make install`); otherwise (other dtypes, CUDA, no compiler, '
    'or `MMDWNET_OPS_BACKEND=torch`) a pure-PyTorch path with the same results runs: a flat, '
    'zero-extended layout in which every one of the k*k offsets is one contiguous multiply-add, '
    'wrapped columns cancelled by masked input copies. Rows "pure PyTorch" above use it.',
    '- D-DW: the kernel generator\'s 1x1 convs on the pooled vector run as matrix products; the '
    'per-image depth-wise conv is one grouped conv over the batch (batch folded into channels) '
    'when gradients are needed and one compiled channels-last kernel call in CPU inference.',
    '- `mmcv.cnn.fuse_conv_bn` folds every conv->BN pair of the blocks (1x1 convs, the static '
    '7x7 depth-wise conv, the kernel generators); the BN after a dynamic aggregation and the '
    'pre-FFN BN have no conv before them and stay as modules (the fast path folds the pre-FFN '
    'BN at run time; tests/test_speed_equivalence.py).',
    '- Flags: `--channels-last` (channels-last input) and `--compile` (`torch.compile`) add '
    'rows; they are off in `make bench` because compiling every model takes minutes on this '
    'CPU; docs/benchmark_compile.md (`make bench-compile`) is one such run. There, '
    '`torch.compile` (inductor defaults) ran every mmdwnet model at about the speed of its '
    'plain modules, well below the eager fast path (the fast path steps aside while compiling), '
    'and channels-last input changed the ratios by 0-15%. No optimisation changes outputs by '
    'more than 1e-5 (tests/test_ops_local_aggregation.py, tests/test_dense_fast_path.py, '
    'tests/test_reference.py).',
    '- Noise: this 2-core machine is shared and single medians move by about +-0.1x between runs '
    '(more for the fast models, whose per-round times are short). Compare ratios within one '
    'run; the min-max spreads show the rounds.',
    '- GPU: not measured. No GPU was available to this project\'s machines or CI; the CUDA '
    'dispatch of the aggregation ops (the pure-PyTorch path on CUDA tensors) is tested only '
    'where a GPU exists, and no Triton/CUDA kernel is provided. The CPU fast paths above do not '
    'run on CUDA tensors.',
]


def op_lines(ops):
    res = ops['results']
    ref = res['local_aggregate_unfold']
    n, c, h, w = ops['shape']
    lines = ['', '## I-D-DW aggregation op', '',
             f'`mmdwnet.ops.local_aggregate` vs the `F.unfold` formulation '
             f'(`local_aggregate_unfold`), input {n}x{c}x{h}x{w}, k={ops["kernel"]}, '
             f'{ops["groups"]} weight groups, float32, x ~ N(0, 1), kernels ~ N(0, 1/k^2) '
             '(unit-scale outputs, as generated kernels give), both requiring grad. '
             'Milliseconds: median (min-max); memory: peak MiB allocated during the call. '
             'Max abs output difference to unfold: '
             f'{ops["max_abs_diff"]:.2e}.', '',
             '| implementation | forward (ms) | forward+backward (ms) | peak mem forward | '
             'peak mem forward+backward |', '| --- | --- | --- | --- | --- |']
    for name, r in res.items():
        mf = f'{r["mem_fwd"]:.0f}' if r['mem_fwd'] is not None else 'n/a'
        mb = f'{r["mem_fwd_bwd"]:.0f}' if r['mem_fwd_bwd'] is not None else 'n/a'
        lines.append(f'| `{name}` | {fmt_ms(r["fwd"])} | {fmt_ms(r["fwd_bwd"])} | {mf} | '
                     f'{mb} |')
    lines.append('')
    for name in [k for k in res if k != 'local_aggregate_unfold']:
        r = res[name]
        sp_f = statistics.median(ref['fwd']) / statistics.median(r['fwd'])
        sp_b = statistics.median(ref['fwd_bwd']) / statistics.median(r['fwd_bwd'])
        line = (f'- `{name}`: speed-up over unfold: forward **{sp_f:.1f}x**, forward+backward '
                f'**{sp_b:.1f}x** (target >= 2x)')
        if r['mem_fwd_bwd'] is not None and ref['mem_fwd_bwd']:
            line += (f'; peak memory forward+backward **{r["mem_fwd_bwd"] / ref["mem_fwd_bwd"]:.2f}'
                     f'** of unfold (target <= 0.25), forward '
                     f'{r["mem_fwd"] / max(ref["mem_fwd"], 1e-9):.2f}')
        lines.append(line + '.')
    lines += ['', 'The forward+backward memory includes the input and weight gradients that every '
              'implementation returns (the weight gradient alone is k*k/(C/G) = 16x the input).']
    return lines


def plot(info, settings, titles, png):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(info['models'])
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    width = 0.8 / max(len(settings), 1)
    for i, s in enumerate(settings):
        vals = [(ratio_stats(info, n, s) or (0, 0, 0)) for n in names]
        xs = [j + (i - (len(settings) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [v[0] for v in vals], width,
               yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]],
               label=titles[s], capsize=2)
    ax.axhline(1.0, color='k', lw=0.8, ls='--')
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([info['models'][n]['label'].split(' (')[0] + ('\n(reference)'
                        if n == REFERENCE else '') for n in names], fontsize=8)
    ax.set_ylabel('throughput / mmpretrain Swin-T')
    ax.set_title('CPU throughput relative to mmpretrain Swin-T (median, min-max)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    info = run(args)
    out, png = write_report(info, args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(info, f, indent=1)
    print(f'wrote {out} and {png}')
    for n in info['models']:
        stats = ratio_stats(info, n, 'infer')
        print(f'{n:18s} inference ratio {stats[0]:.2f}x' if stats else n)


if __name__ == '__main__':
    main()
