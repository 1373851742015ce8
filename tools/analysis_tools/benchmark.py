"""Speed / memory benchmark of the paper's Table 2 tiny models against mmpretrain's Swin-T.

    python tools/analysis_tools/benchmark.py --out docs/benchmark.md      (``make bench``)
    python tools/analysis_tools/benchmark.py --models dwnet swin --rounds 3 --no-train --out /tmp/b.md
    python tools/analysis_tools/benchmark.py --device cuda   (``make bench-gpu``, docs/benchmark_gpu.md)

What is measured, in one process:

* every model is an mmpretrain ``ImageClassifier`` (backbone + ``GlobalAveragePooling`` +
  ``LinearClsHead``, 1000 classes), ours built from ``configs/classification/*-tiny_*.py``, the
  reference from mmpretrain's own ``SwinTransformer(arch='tiny')``;
* CPU (``--threads`` intra-op threads): inference images/s (``mode='tensor'``,
  ``torch.no_grad``) at ``--batch`` and at batch 1, after ``mmcv.cnn.fuse_conv_bn`` (the deploy
  step) and without it, and with the CPU inference fast path of the dense layers switched off
  ("plain modules"); one training step (loss forward, backward, AdamW step) at ``--batch``;
  peak memory through torch's CPU allocator (``torch.profiler``);
* CUDA (``--device cuda``, every ``--batch``, default 64 and 128): fused inference in float32,
  under float16 autocast (AMP), and AMP with model and input channels-last; one AMP training
  step (autocast, ``GradScaler``, AdamW); peak ``torch.cuda`` memory.  Refuses to run without
  a CUDA device;
* ratios to the reference and to mmdwnet's own Swin-T, which shares every layer but the mixer
  with the other models (the paper's comparison); models are interleaved: each round runs every
  model once per setting, after a warm-up round; the headline is the median over rounds of the
  per-round ratio to the reference, with min-max spreads;
* FLOPs: :func:`mmdwnet.analysis.count_flops` (multiply-accumulates, one 224x224 image);
* the aggregation ops at the tiny model's stage-1 shape against their ``F.unfold``
  formulation (CPU: ``local_aggregate``; CUDA: also the fused I-D-DW op on the Triton backend
  against the pure-PyTorch CUDA path), forward and forward+backward.

Writes a markdown report (CPU: and a bar chart, ``<out stem>.png``).  Targets are data in
``docs/benchmark_targets.yml``; how the speed is obtained is told in docs/benchmark_notes.md,
which the reports link to.
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
TARGETS_FILE = osp.join(REPO, 'docs', 'benchmark_targets.yml')
NOTES_FILE = osp.join(REPO, 'docs', 'benchmark_notes.md')

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
# Variants run with the ops on the pure-PyTorch backend (MMDWNET_OPS_BACKEND=torch).
TORCH_BACKEND = {'i-dynamic-dwnet-torch'}
REFERENCE = 'mmpretrain-swin'
# The same macro architecture with Swin's mixer: the paper's own baseline.
ARCH_REFERENCE = 'swin'
DEFAULTS = {  # per device: --batch, --op-shape, --iters
    'cpu': dict(batch=[8], op_shape=[8, 96, 56, 56], iters=1),
    'cuda': dict(batch=[64, 128], op_shape=[64, 96, 56, 56], iters=10),
}
GPU_SETTINGS = ('infer', 'infer_amp', 'infer_amp_cl', 'train_amp')


def load_targets(path=TARGETS_FILE):
    """Targets and the paper's ratios (docs/benchmark_targets.yml)."""
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                        help='cpu (make bench) or cuda (make bench-gpu; refuses without a GPU)')
    parser.add_argument('--out', default=None, help='markdown report to write (default: '
                        'docs/benchmark.md, with --device cuda docs/benchmark_gpu.md)')
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS),
                        help='models to measure (the reference is always added)')
    parser.add_argument('--rounds', type=int, default=7, help='interleaved timed rounds')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first')
    parser.add_argument('--batch', type=int, nargs='+', default=None,
                        help='batch size (CPU: one, default 8; CUDA: one or more, default 64 128)')
    parser.add_argument('--iters', type=int, default=None,
                        help='CUDA: calls per timed sample (default 10)')
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
    parser.add_argument('--op-shape', type=int, nargs=4, default=None,
                        metavar=('N', 'C', 'H', 'W'), help='aggregation op input shape '
                        '(default 8 96 56 56; CUDA 64 96 56 56)')
    parser.add_argument('--op-groups', type=int, default=32)
    parser.add_argument('--op-kernel', type=int, default=7)
    parser.add_argument('--op-rounds', type=int, default=3)
    args = parser.parse_args(argv)
    args.command = 'python tools/analysis_tools/benchmark.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    defaults = DEFAULTS[args.device]
    args.batches = args.batch or defaults['batch']
    args.op_shape = args.op_shape or defaults['op_shape']
    args.iters = args.iters or defaults['iters']
    args.out = args.out or ('docs/benchmark_gpu.md' if args.device == 'cuda'
                            else 'docs/benchmark.md')
    if args.rounds < 1:
        parser.error('--rounds must be >= 1')
    if min(args.batches) < 1 or args.threads < 1 or args.iters < 1:
        parser.error('--batch, --threads and --iters must be >= 1')
    if args.device == 'cpu' and len(args.batches) != 1:
        parser.error('--batch takes one value on CPU (several only with --device cuda)')
    args.batch = args.batches[0]
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


def peak_mib(fn, device):
    """Peak MiB allocated while ``fn()`` runs above the level at its start (CPU or CUDA)."""
    if device.type != 'cuda':
        return peak_alloc_mib(fn)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - start) / 2**20


def timed(fn, device=None):
    """Seconds ``fn()`` takes (CUDA: from and to an idle device)."""
    cuda = device is not None and device.type == 'cuda'
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


class Runner:
    """The callables to time for one model."""

    def __init__(self, name, args):
        self.name, self.args = name, args
        self.device = torch.device(args.device)
        gpu = self.device.type == 'cuda'
        self.fused = build(name, args, fused=True).to(self.device)
        self.unfused = None if args.no_unfused or gpu else build(name, args, fused=False)
        self.fused_cl = copy.deepcopy(self.fused).to(memory_format=torch.channels_last) \
            if gpu else None
        self.train_model = None if args.no_train else build(name, args, fused=False)
        if self.train_model is not None:
            self.train_model.to(self.device).train()
            self.optim = torch.optim.AdamW(self.train_model.parameters(), lr=1e-4,
                                           weight_decay=0.05)
            self.scaler = torch.amp.GradScaler('cuda') if gpu else None
        self.x = torch.randn(args.batch, 3, args.img_size, args.img_size).to(self.device)
        self.x1 = self.x[:1].clone()
        self.samples = [s.to(self.device) for s in make_samples(args.batch)]
        self.compiled = torch.compile(self.fused) if args.compile else None
        self.x_cl = self.x.contiguous(memory_format=torch.channels_last)

    def infer(self, model, x, fast=True, amp=False):
        from mmdwnet.ops.switches import fast_inference
        with torch.no_grad(), fast_inference(fast), \
                torch.autocast(self.device.type, dtype=torch.float16, enabled=amp):
            model(x, mode='tensor')

    def settings(self):
        """setting name -> (callable, images per call)."""
        if self.device.type == 'cuda':
            s = self._gpu()
        else:
            s = {'infer': (lambda: self.infer(self.fused, self.x), self.args.batch)}
            s = self._all(s)
        return {k: (self._backend(f), n) for k, (f, n) in s.items()}

    def _backend(self, fn):
        if self.name not in TORCH_BACKEND:
            return fn

        def wrapped():
            from mmdwnet.ops.switches import use_ops_backend
            with use_ops_backend('torch'):
                return fn()
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

    def _gpu(self):
        iters = self.args.iters

        def repeat(fn):
            return lambda: [fn() for _ in range(iters)]
        s = dict(infer=lambda: self.infer(self.fused, self.x),
                 infer_amp=lambda: self.infer(self.fused, self.x, amp=True),
                 infer_amp_cl=lambda: self.infer(self.fused_cl, self.x_cl, amp=True))
        if self.train_model is not None:
            s['train_amp'] = self.train_step
        return {k: (repeat(f), self.args.batch * iters) for k, f in s.items()}

    def train_step(self):
        self.optim.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16,
                            enabled=self.scaler is not None):
            losses = self.train_model(self.x, self.samples, mode='loss')
            loss = sum(v for v in losses.values() if isinstance(v, torch.Tensor))
        if self.scaler is None:
            loss.backward()
            self.optim.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()


def time_impls(impls, inputs, grad, args, device, progress=None):
    """Forward and forward+backward seconds (and peak MiB) of each ``impls[name](*inputs)``;
    ``max_abs_diff``: largest output difference of each to the last (the unfold reference)."""

    def fwd(f):
        with torch.no_grad():
            f(*inputs)

    def fwd_bwd(f):
        for t in inputs:
            t.grad = None
        f(*inputs).backward(grad)
        for t in inputs:
            t.grad = None

    with torch.no_grad():
        outs = {name: f(*inputs) for name, f in impls.items()}
    ref = outs[list(impls)[-1]]
    res = {name: dict(fwd=[], fwd_bwd=[], max_abs_diff=(out.float() - ref.float()).abs().max()
                      .item()) for name, out in outs.items()}
    del outs, ref
    for name, f in impls.items():  # warm-up
        fwd_bwd(f)
    for _ in range(args.op_rounds):
        for name, f in impls.items():
            res[name]['fwd'].append(timed(lambda: fwd(f), device))
            res[name]['fwd_bwd'].append(timed(lambda: fwd_bwd(f), device))
            if progress is not None:
                progress.update()
    for name, f in impls.items():
        res[name]['mem_fwd'] = None if args.no_memory else peak_mib(lambda: fwd(f), device)
        res[name]['mem_fwd_bwd'] = None if args.no_memory else peak_mib(
            lambda: fwd_bwd(f), device)
    return res


def on_backend(fn, name):
    """``fn`` with the ops on backend ``name`` (:func:`mmdwnet.ops.switches.use_ops_backend`)."""
    from mmdwnet.ops.switches import use_ops_backend

    def wrapped(*inputs):
        with use_ops_backend(name):
            return fn(*inputs)
    return wrapped


def op_benchmark(args, progress=None):
    """local_aggregate vs local_aggregate_unfold (CPU: compiled kernels and pure PyTorch)."""
    from mmdwnet.ops import local_aggregate
    from mmdwnet.ops.backends.reference import local_aggregate_unfold
    n, c, h, w = args.op_shape
    k, g = args.op_kernel, args.op_groups
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    # kernels at the scale of generated ones (outputs of unit scale)
    weight = (torch.randn(n, g, k, k, h, w) / k).requires_grad_()
    grad = torch.randn(n, c, h, w)
    impls = {'local_aggregate': local_aggregate,
             'local_aggregate (pure PyTorch)': on_backend(local_aggregate, 'torch'),
             'local_aggregate_unfold': local_aggregate_unfold}
    res = time_impls(impls, (x, weight), grad, args, torch.device('cpu'), progress)
    return dict(shape=[n, c, h, w], kernel=k, groups=g,
                max_abs_diff=res['local_aggregate']['max_abs_diff'], results=res)


def gpu_op_benchmark(args, progress=None):
    """Each op on the Triton backend (if available), the pure-PyTorch backend and as F.unfold,
    on ``--device``: ``local_aggregate`` (materialised weights) and the fused I-D-DW op."""
    import torch.nn.functional as F

    from mmdwnet.ops import local_aggregate, local_aggregate_pointwise
    from mmdwnet.ops.backends import get
    from mmdwnet.ops.backends.reference import local_aggregate_unfold
    device = torch.device(args.device)
    n, c, h, w = args.op_shape
    k, g, r = args.op_kernel, args.op_groups, args.op_shape[1] // 4
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device=device, requires_grad=True)
    grad = torch.randn(n, c, h, w, device=device)
    weight = (torch.randn(n, g, k, k, h, w, device=device) / k).requires_grad_()
    feat = torch.randn(n, r, h, w, device=device, requires_grad=True)
    w1x1 = (torch.randn(g * k * k, r, 1, 1, device=device) / (k * r**0.5)).requires_grad_()
    bias = torch.zeros(g * k * k, device=device, requires_grad=True)
    triton = get('triton')
    backends = ['triton'] if triton is not None and triton.available() and triton.supports(
        x) else []
    backends.append('torch')

    def pointwise(*t):
        return local_aggregate_pointwise(*t, g, k)

    def pointwise_unfold(x, feat, w1x1, bias):
        kernels = F.conv2d(feat, w1x1, bias).view(n, g, k, k, h, w)
        return local_aggregate_unfold(x, kernels)

    ops = {}
    for op, fn, unfold, inputs in (
            ('local_aggregate', local_aggregate, local_aggregate_unfold, (x, weight)),
            ('local_aggregate_pointwise', pointwise, pointwise_unfold, (x, feat, w1x1, bias))):
        impls = {f'{op} ({name})': on_backend(fn, name) for name in backends}
        impls['F.unfold'] = unfold
        ops[op] = time_impls(impls, inputs, grad, args, device, progress)
    return dict(shape=[n, c, h, w], kernel=k, groups=g, reduced=r, backends=backends,
                results=ops)


def run(args):
    from mmengine.utils import ProgressBar

    import mmdwnet  # noqa: F401  (registers the models)
    from mmdwnet.analysis import count_flops, count_params
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
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
                seconds = timed(fn, device)
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
        if not args.no_memory and device.type == 'cuda':
            entry['memory'] = {s: peak_mib(f, device) for s, (f, _) in settings[name].items()}
        elif not args.no_memory:
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


def fmt_mib(value):
    return 'n/a' if value is None else f'{value:.0f}'


def versions():
    import mmcv
    import mmengine
    import mmpretrain
    return (f'Python {platform.python_version()}, torch {torch.__version__}, mmcv '
            f'{mmcv.__version__}, mmengine {mmengine.__version__}, mmpretrain '
            f'{mmpretrain.__version__}')


def machine_lines(args):
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
        f'- Versions: {versions()}.',
        f'- Settings: batch {args.batch}, {args.img_size}x{args.img_size}, float32, '
        f'{args.warmup} warm-up + {args.rounds} timed rounds, models interleaved in every round.',
    ]


MODEL_LINES = [
    '- Models: mmpretrain `ImageClassifier` = backbone + `GlobalAveragePooling` + '
    '`LinearClsHead` (1000 classes), ours from `configs/classification/*-tiny_*.py`, the '
    "reference built from mmpretrain's `SwinTransformer(arch='tiny')`. Fused = after "
    '`mmcv.cnn.fuse_conv_bn` (the deploy step; the reference has no conv-BN pair).',
    '- Ratios are the median over rounds of (model images/s) / (reference images/s) '
    'measured in the same round; parentheses give min-max over rounds.',
]


def notes_lines(out):
    """The closing section: a link to the prose of docs/benchmark_notes.md."""
    link = osp.relpath(NOTES_FILE, osp.dirname(osp.abspath(out))).replace(os.sep, '/')
    return ['', '## How the speed is obtained (and switches)', '',
            f'See [{osp.basename(NOTES_FILE)}]({link}): the dense fast path, the ops backends '
            '(compiled CPU kernels, pure PyTorch, Triton), fusing, flags and noise.']


def write_text(path, lines):
    """Write ``lines`` to ``path`` atomically: an interrupted run never leaves a half-written
    report."""
    from mmdwnet.utils.fileio import atomic_open
    with atomic_open(path) as f:
        f.write('\n'.join(lines) + '\n')


def write_report(info, args):
    out = args.out
    png = osp.splitext(out)[0] + '.png'
    targets = load_targets()
    paper, cpu_targets = targets['paper_v100'], targets['cpu']
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
    lines += MODEL_LINES + [
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
        row.append(f'{paper[n]:.2f}x' if n in paper else '')
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
            row.append(f'{paper[n]:.2f}x' if n in paper else '')
            lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', '## Absolute numbers (images/s: median (min-max)), FLOPs, memory', '',
              '| model | params (M) | FLOPs (G) | ' + ' | '.join(titles[s] for s in settings)
              + ' | peak mem inference (MiB) | peak mem train step (MiB) |',
              '|' + ' --- |' * (len(settings) + 5)]
    for n in names:
        m = info['models'][n]
        flops = f'{m["flops"]:.2f}' if 'flops' in m else 'n/a'
        row = [m['label'], f'{m["params"]:.2f}', flops]
        row += [fmt_speed(m['throughput'].get(s)) for s in settings]
        row += [fmt_mib(m.get('mem_infer')), fmt_mib(m.get('mem_train'))]
        lines.append('| ' + ' | '.join(row) + ' |')
    lines += ['', '## Targets (inference, batch %d, fused, ratio to the reference)' % args.batch,
              '', '| model | target | measured (median, min-max) | met | plain modules '
              '(fast path off) |', '| --- | --- | --- | --- | --- |']
    for n, target in cpu_targets['models'].items():
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
        lines += op_lines(ops, cpu_targets)
    lines += notes_lines(out)
    write_text(out, lines)
    plot(info, settings, titles, png)
    return out, png


def op_lines(ops, cpu_targets):
    res = ops['results']
    ref = res['local_aggregate_unfold']
    n, c, h, w = ops['shape']
    speedup, memory = cpu_targets['op_speedup_over_unfold'], cpu_targets['op_memory_of_unfold']
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
        lines.append(f'| `{name}` | {fmt_ms(r["fwd"])} | {fmt_ms(r["fwd_bwd"])} | '
                     f'{fmt_mib(r["mem_fwd"])} | {fmt_mib(r["mem_fwd_bwd"])} |')
    lines.append('')
    for name in [k for k in res if k != 'local_aggregate_unfold']:
        r = res[name]
        sp_f = statistics.median(ref['fwd']) / statistics.median(r['fwd'])
        sp_b = statistics.median(ref['fwd_bwd']) / statistics.median(r['fwd_bwd'])
        line = (f'- `{name}`: speed-up over unfold: forward **{sp_f:.1f}x**, forward+backward '
                f'**{sp_b:.1f}x** (target >= {speedup:g}x)')
        if r['mem_fwd_bwd'] is not None and ref['mem_fwd_bwd']:
            line += (f'; peak memory forward+backward **{r["mem_fwd_bwd"] / ref["mem_fwd_bwd"]:.2f}'
                     f'** of unfold (target <= {memory:g}), forward '
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


# ---------------------------------------------------------------------------- GPU report
GPU_TITLES = dict(infer='inference fp32', infer_amp='inference AMP (fp16)',
                  infer_amp_cl='inference AMP, channels-last', train_amp='train step AMP')


def gpu_machine_lines(args, ops_backend):
    import torch.backends.cudnn as cudnn
    props = torch.cuda.get_device_properties(0)
    try:
        import triton
        triton_version = f'Triton {triton.__version__}'
    except ImportError:
        triton_version = 'Triton not installed'
    return [
        f'- GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda},'
        f' cuDNN {cudnn.version()}, {triton_version}; ops backend on CUDA tensors: '
        f'`{ops_backend}`.',
        f'- Versions: {versions()}.',
        f'- Settings: batch {", ".join(map(str, args.batches))}, {args.img_size}x'
        f'{args.img_size}, {args.warmup} warm-up + {args.rounds} timed rounds of {args.iters} '
        'calls each (CUDA synchronised before and after), models interleaved in every round; '
        f'`cudnn.benchmark` on; TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN '
        f'{cudnn.allow_tf32} (PyTorch defaults).',
        '- Columns: fp32 = float32 eval forward of the fused model; AMP = the same under '
        '`torch.autocast("cuda", torch.float16)`; channels-last = AMP with model and input in '
        'channels-last memory format; train step AMP = loss forward and backward under '
        'autocast float16 with `torch.amp.GradScaler`, AdamW step.',
        '- Peak memory: `torch.cuda.max_memory_allocated` during one call above the allocated '
        'level at its start (activations and, in training, gradients; not parameters or AdamW '
        'state that exist before).',
    ] + MODEL_LINES


def write_gpu_report(runs, ops, args, seconds):
    """The CUDA report: targets, per-batch ratios/absolute numbers/memory, ops."""
    targets = load_targets()
    paper, gpu_targets = targets['paper_v100'], targets['gpu']
    first = runs[args.batches[0]]
    names = list(first['models'])
    lines = ['# GPU speed and memory benchmark', '',
             f'Written by `{args.command}` (`make bench-gpu`) on '
             f'{datetime.date.today().isoformat()} in {seconds:.0f} s.', '']
    lines += gpu_machine_lines(args, 'triton' if ops is None or 'triton' in ops['backends']
                               else 'torch (reference; Triton unavailable)')
    lines += ['', '## Targets (fp32 inference, ratio to mmpretrain Swin-T)', '',
              '| model | target | ' + ' | '.join(f'batch {b}' for b in args.batches)
              + ' | met |', '|' + ' --- |' * (len(args.batches) + 3)]
    for n, target in gpu_targets['models'].items():
        if n not in first['models']:
            continue
        stats = [ratio_stats(runs[b], n, 'infer') for b in args.batches]
        met = all(s is not None and s[0] >= target for s in stats)
        lines.append(f'| {first["models"][n]["label"]} | >= {target:.2f}x | '
                     + ' | '.join(fmt_ratio(s) for s in stats)
                     + f' | {"yes" if met else "**no**"} |')
    for b in args.batches:
        info = runs[b]
        settings = [s for s in GPU_SETTINGS if s in info['models'][names[0]]['throughput']]
        lines += ['', f'## Batch {b}', '', '### Throughput relative to mmpretrain Swin-T', '',
                  '| model | ' + ' | '.join(GPU_TITLES[s] for s in settings)
                  + ' | paper (V100) |', '|' + ' --- |' * (len(settings) + 2)]
        for n in names:
            row = [info['models'][n]['label']]
            row += [fmt_ratio(ratio_stats(info, n, s)) for s in settings]
            row.append(f'{paper[n]:.2f}x' if n in paper else '')
            lines.append('| ' + ' | '.join(row) + ' |')
        lines += ['', '### Images/s (median (min-max)), FLOPs, peak memory (MiB)', '',
                  '| model | params (M) | FLOPs (G) | '
                  + ' | '.join(GPU_TITLES[s] for s in settings) + ' | '
                  + ' | '.join(f'peak mem {GPU_TITLES[s]}' for s in settings) + ' |',
                  '|' + ' --- |' * (2 * len(settings) + 3)]
        for n in names:
            m = info['models'][n]
            flops = first['models'][n].get('flops')
            row = [m['label'], f'{m["params"]:.2f}', 'n/a' if flops is None else f'{flops:.2f}']
            row += [fmt_speed(m['throughput'].get(s)) for s in settings]
            row += [fmt_mib(m.get('memory', {}).get(s)) for s in settings]
            lines.append('| ' + ' | '.join(row) + ' |')
    if ops:
        lines += gpu_op_lines(ops, gpu_targets['triton_op_speedup_over_torch'])
    lines += notes_lines(args.out)
    write_text(args.out, lines)
    return args.out


def gpu_op_lines(ops, target):
    n, c, h, w = ops['shape']
    lines = ['', '## Aggregation ops on CUDA', '',
             f'Input {n}x{c}x{h}x{w}, k={ops["kernel"]}, {ops["groups"]} weight groups, float32, '
             'all inputs requiring grad; `local_aggregate` takes materialised (N, G, k, k, H, W) '
             'weights ~ N(0, 1/k^2); `local_aggregate_pointwise` (the I-D-DW op) makes them from '
             f'{ops["reduced"]} feature channels with a 1x1 conv. Milliseconds: median '
             '(min-max); memory: peak MiB allocated during the call; max abs output difference '
             'to F.unfold.']
    for op, res in ops['results'].items():
        lines += ['', f'### `{op}`', '', '| implementation | forward (ms) | forward+backward '
                  '(ms) | peak mem forward | peak mem forward+backward | max abs diff |',
                  '| --- | --- | --- | --- | --- | --- |']
        for name, r in res.items():
            lines.append(f'| `{name}` | {fmt_ms(r["fwd"])} | {fmt_ms(r["fwd_bwd"])} | '
                         f'{fmt_mib(r["mem_fwd"])} | {fmt_mib(r["mem_fwd_bwd"])} | '
                         f'{r["max_abs_diff"]:.2e} |')
        lines.append('')
        torch_name = f'{op} (torch)'
        for name in res:
            if name == torch_name:
                continue
            sp = {p: statistics.median(res[torch_name][p]) / statistics.median(res[name][p])
                  for p in ('fwd', 'fwd_bwd')}
            line = (f'- `{name}`: speed-up over the pure-PyTorch path: forward '
                    f'**{sp["fwd"]:.1f}x**, '
                    f'forward+backward **{sp["fwd_bwd"]:.1f}x**')
            if op == 'local_aggregate_pointwise' and name.endswith('(triton)'):
                met = min(sp.values()) >= target
                line += f' (target >= {target:g}x: {"met" if met else "**not met**"})'
            lines.append(line + '.')
    if 'triton' not in ops['backends']:
        lines += ['', '- Triton was not available: no Triton rows, and the Triton op target '
                  'was not measured.']
    return lines


def require_cuda():
    """Refuse ``--device cuda`` without a CUDA device (before anything runs or is written)."""
    if not torch.cuda.is_available():
        sys.exit('benchmark.py --device cuda: no CUDA device is visible '
                 '(torch.cuda.is_available() is False), so there is nothing to measure; no '
                 'report was written. Run it on a machine with an NVIDIA GPU.')


def main_gpu(args):
    import mmdwnet  # noqa: F401  (registers the models)
    from mmdwnet.analysis import count_flops
    torch.backends.cudnn.benchmark = True
    t0 = time.perf_counter()
    flops = {} if args.no_flops else {
        name: count_flops(build(name, args, False), (3, args.img_size, args.img_size)) / 1e9
        for name in dict.fromkeys(args.models)}
    runs = {}
    for batch in args.batches:
        batch_args = copy.copy(args)
        batch_args.batch, batch_args.no_ops, batch_args.no_flops = batch, True, True
        runs[batch] = run(batch_args)
        for name, entry in runs[batch]['models'].items():
            if name in flops:
                entry['flops'] = flops[name]
        torch.cuda.empty_cache()
    ops = None if args.no_ops else gpu_op_benchmark(args)
    out = write_gpu_report(runs, ops, args, time.perf_counter() - t0)
    if args.json:
        write_text(args.json, [json.dumps(dict(runs=runs, ops=ops), indent=1)])
    print(f'wrote {out}')


def main(argv=None):
    args = parse_args(argv)
    if args.device == 'cuda':
        require_cuda()
        return main_gpu(args)
    info = run(args)
    out, png = write_report(info, args)
    if args.json:
        write_text(args.json, [json.dumps(info, indent=1)])
    print(f'wrote {out} and {png}')
    for n in info['models']:
        stats = ratio_stats(info, n, 'infer')
        print(f'{n:18s} inference ratio {stats[0]:.2f}x' if stats else n)


if __name__ == '__main__':
    main()
