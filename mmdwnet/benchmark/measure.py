"""Measuring: timers, peak memory, the per-model runners of the legacy tables, the aggregation-op
benchmark, and :func:`measure_model` for any model.

All timings are wall-clock seconds of one call (``timed``; CUDA synchronised before and after);
peak memory is the peak of bytes allocated during one call above the level at its start
(CPU: ``torch.profiler`` memory events; CUDA: ``torch.cuda.max_memory_allocated``).
"""
import argparse
import copy
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .suites import build_model

__all__ = ['timed', 'peak_alloc_mib', 'peak_mib', 'measure_model', 'train_step_fn',
           'infer_fn', 'workspace_mib', 'Runner', 'run', 'run_gpu', 'op_benchmark',
           'gpu_op_benchmark', 'measure_compiled_training']


def make_samples(batch, labels=None):
    """``batch`` mmpretrain ``DataSample``s with ground-truth labels (default: i % 1000)."""
    from mmpretrain.structures import DataSample
    labels = [i % 1000 for i in range(batch)] if labels is None else labels
    return [DataSample().set_gt_label(int(label)) for label in labels]


# ---------------------------------------------------------------------------- measuring
def peak_alloc_mib(fn: Callable[[], Any]) -> float:
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


def peak_mib(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak MiB allocated while ``fn()`` runs above the level at its start (CPU or CUDA)."""
    if device.type != 'cuda':
        return peak_alloc_mib(fn)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - start) / 2**20


def timed(fn: Callable[[], Any], device: Optional[torch.device] = None) -> float:
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
    """The callables to time for one model (``entry``: its suite entry, see :mod:`.suites`)."""

    def __init__(self, name: str, entry: dict, args: argparse.Namespace) -> None:
        self.name, self.entry, self.args = name, entry, args
        self.device = torch.device(args.device)
        gpu = self.device.type == 'cuda'
        self.fused = self.build(fused=True).to(self.device)
        self.unfused = None if args.no_unfused or gpu else self.build(fused=False)
        self.fused_cl = copy.deepcopy(self.fused).to(memory_format=torch.channels_last) \
            if gpu else None
        self.train_model = None if args.no_train else self.build(fused=False)
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

    def build(self, fused: bool) -> nn.Module:
        return build_model(self.entry, self.args.img_size, self.args.arch, fused)

    def infer(self, model: nn.Module, x: torch.Tensor, fast: bool = True,
              amp: bool = False) -> None:
        from mmdwnet.ops.switches import fast_inference
        with torch.no_grad(), fast_inference(fast), \
                torch.autocast(self.device.type, dtype=torch.float16, enabled=amp):
            model(x, mode='tensor')

    def settings(self) -> Dict[str, Tuple[Callable[[], Any], int]]:
        """setting name -> (callable, images per call)."""
        if self.device.type == 'cuda':
            s = self._gpu()
        else:
            s = {'infer': (lambda: self.infer(self.fused, self.x), self.args.batch)}
            s = self._all(s)
        return {k: (self._backend(f), n) for k, (f, n) in s.items()}

    def _backend(self, fn):
        backend = self.entry.get('ops_backend')
        return fn if backend is None else on_backend(fn, backend)

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

    def train_step(self) -> None:
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


def op_benchmark(args: argparse.Namespace,
                 progress: Optional[Callable[..., Any]] = None) -> dict:
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


def gpu_op_benchmark(args: argparse.Namespace,
                     progress: Optional[Callable[..., Any]] = None) -> dict:
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


def workspace_mib() -> float:
    """MiB held by this thread's reused I-D-DW kernel workspace (mmdwnet.ops)."""
    try:
        from mmdwnet.ops import workspace_bytes
    except ImportError:  # not re-exported (yet): the backends' public accessor
        from mmdwnet.ops.backends._common import workspace_bytes
    return workspace_bytes() / 2**20


def run(args: argparse.Namespace, suite: dict) -> dict:
    """The legacy tables: every model of ``args.models`` (names of ``suite['models']``) in
    every setting, interleaved per round; the aggregation-op section unless ``args.no_ops``."""
    from mmengine.utils import ProgressBar

    import mmdwnet  # noqa: F401  (registers the models)
    from mmdwnet.analysis import count_flops, count_params
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list(dict.fromkeys(args.models))
    runners = {name: Runner(name, suite['models'][name], args) for name in names}
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
    info = dict(models={}, seconds=time.perf_counter() - t0, reference=suite['reference'],
                arch_reference=suite['arch_reference'])
    for name, runner in runners.items():
        entry = dict(label=suite['models'][name]['label'], throughput=times[name],
                     params=count_params(runner.fused) / 1e6)
        if not args.no_flops:
            entry['flops'] = count_flops(runner.unfused or runner.build(False),
                                         (3, args.img_size, args.img_size)) / 1e9
        if not args.no_memory and device.type == 'cuda':
            entry['memory'] = {s: peak_mib(f, device) for s, (f, _) in settings[name].items()}
        elif not args.no_memory:
            entry['mem_infer'] = peak_alloc_mib(settings[name]['infer'][0])
            if 'train' in settings[name]:
                entry['mem_train'] = peak_alloc_mib(settings[name]['train'][0])
        info['models'][name] = entry
    info['ops'] = ops
    info['workspace_mib'] = workspace_mib()
    return info



def run_gpu(args: argparse.Namespace, suite: dict) -> dict:
    """:func:`run` once per ``args.batches`` on CUDA (no ops section); FLOPs counted once."""
    from mmdwnet.analysis import count_flops
    names = list(dict.fromkeys(args.models))
    flops = {} if args.no_flops else {
        name: count_flops(build_model(suite['models'][name], args.img_size, args.arch, False),
                          (3, args.img_size, args.img_size)) / 1e9 for name in names}
    runs = {}
    for batch in args.batches:
        batch_args = copy.copy(args)
        batch_args.batch, batch_args.no_ops, batch_args.no_flops = batch, True, True
        runs[batch] = run(batch_args, suite)
        for name, entry in runs[batch]['models'].items():
            if name in flops:
                entry['flops'] = flops[name]
        torch.cuda.empty_cache()
    return runs


# ---------------------------------------------------------------------------- any model
def _loss(out) -> torch.Tensor:
    """A scalar from any model output (tensor, or nested tuple/list/dict of tensors)."""
    if isinstance(out, torch.Tensor):
        return out.float().square().mean()
    if isinstance(out, dict):
        out = list(out.values())
    return sum(_loss(o) for o in out)


def train_step_fn(model: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
    """One training step of any model as a callable: ``model(inputs)`` in train mode, a mean
    squared output as the loss, backward, AdamW step (lr 1e-4; the head's own loss is not
    needed to time the network)."""
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def step():
        optim.zero_grad(set_to_none=True)
        _loss(model(inputs)).backward()
        optim.step()
    return step


def infer_fn(model: nn.Module, inputs: torch.Tensor) -> Callable[[], None]:
    """Eval forward of ``model(inputs)`` under ``torch.no_grad`` as a callable."""
    model.eval()

    def forward():
        with torch.no_grad():
            model(inputs)
    return forward


def measure_model(model: nn.Module, input_shape: Sequence[int], batch: int = 1,
                  mode: str = 'infer', rounds: int = 3, warmup: int = 1,
                  flops: Optional[float] = None, memory: bool = True,
                  device: str = 'cpu', ops_backend: Optional[str] = None) -> Dict[str, object]:
    """Time any model: ``model(x)`` on ``x`` of shape ``(batch, *input_shape)``.

    Args:
        model: any ``nn.Module`` taking one tensor (a backbone, an mmpretrain classifier, a
            model with a mixer defined outside mmdwnet); it is not fused or copied here.
        input_shape: (C, H, W) of one input.
        batch: images per call.
        mode: 'infer' (eval, no_grad) or 'train' (:func:`train_step_fn`; leaves the model in
            train mode with updated weights).
        rounds, warmup: timed and untimed calls.
        flops: multiply-adds of one forward of ONE input; default: counted with
            :func:`mmdwnet.analysis.count_flops`.  ``0`` skips counting.
        memory: also measure peak allocated MiB of one call (CPU profiler / CUDA stats).
        device: where the model and input go.
        ops_backend: run with the mmdwnet ops on this backend (e.g. 'torch').

    Returns:
        dict(seconds=[per timed call], best_s, median_s, images_per_s (best), macs (one input,
        forward), gflop (per call: 2 x macs x batch, x3 for a training step), gflops_per_s
        (best), peak_mib or None).
    """
    if mode not in ('infer', 'train'):
        raise ValueError(f"mode must be 'infer' or 'train', got {mode!r}")
    if rounds < 1 or warmup < 0 or batch < 1:
        raise ValueError(f'rounds and batch must be >= 1 and warmup >= 0, got rounds={rounds}, '
                         f'batch={batch}, warmup={warmup}')
    dev = torch.device(device)
    model = model.to(dev)
    if flops is None:
        from mmdwnet.analysis import count_flops
        flops = count_flops(model, tuple(input_shape))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=gen).to(dev)
    fn = infer_fn(model, x) if mode == 'infer' else train_step_fn(model, x)
    if ops_backend is not None:
        fn = on_backend(fn, ops_backend)
    for _ in range(warmup):
        fn()
    seconds = [timed(fn, dev) for _ in range(rounds)]
    gflop = 2 * flops * batch * (3 if mode == 'train' else 1) / 1e9
    best = min(seconds)
    return dict(seconds=seconds, best_s=best, median_s=statistics.median(seconds),
                images_per_s=batch / best, macs=flops, gflop=gflop,
                gflops_per_s=gflop / best if gflop else None,
                peak_mib=peak_mib(fn, dev) if memory else None)


# ---------------------------------------------------------------------------- compiled training
def build_for_training(config: str):
    """(model in train mode, optimizer wrapper cfg) of a repo config, batch augments off."""
    from .suites import _build, _config, _plain
    cfg = _config(config)
    cfg.model.train_cfg = None  # Mixup / CutMix draw random numbers per step: off
    model = _build(_plain(cfg.model))
    model.init_weights()
    model.train()
    return model, cfg.optim_wrapper


def config_train_step(model, wrapper, inputs, samples) -> None:
    """One mmengine ``train_step`` after the data preprocessor: loss, backward, the wrapper's
    update (clipping, AdamW with ``paramwise_cfg``)."""
    with wrapper.optim_context(model):
        losses = model.loss(inputs, samples)
    loss, _ = model.parse_losses(losses)
    wrapper.update_params(loss)


def measure_compiled_training(config: str, batch: int, img_size: int, rounds: int,
                              backend: str = 'inductor'
                              ) -> Tuple[Dict[str, float], Dict[str, List[float]]]:
    """Eager vs ``model.backbone.compile(backend)`` training steps of ``config`` (alternating
    rounds after one warm-up step each). Returns (first step seconds, {variant: [seconds]})."""
    from mmengine.optim import build_optim_wrapper

    from mmdwnet.utils import inductor_compat
    inductor_compat.install()  # dynamic shapes on CPU; import mmdwnet leaves torch alone
    eager, wrapper_cfg = build_for_training(config)
    compiled = copy.deepcopy(eager)
    compiled.backbone.compile(backend=backend)
    models = {'eager': eager, 'compiled': compiled}
    wrappers = {k: build_optim_wrapper(m, copy.deepcopy(wrapper_cfg)) for k, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 3, img_size, img_size, generator=gen)
    labels = torch.randint(0, eager.head.num_classes, (batch, ), generator=gen)
    samples = make_samples(batch, labels.tolist())
    first, times = {}, {k: [] for k in models}
    for name in models:  # warm-up; the compiled model's first step compiles
        start = time.perf_counter()
        config_train_step(models[name], wrappers[name], inputs, samples)
        first[name] = time.perf_counter() - start
    for _ in range(rounds):
        for name in models:
            start = time.perf_counter()
            config_train_step(models[name], wrappers[name], inputs, samples)
            times[name].append(time.perf_counter() - start)
    return first, times
