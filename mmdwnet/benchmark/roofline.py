"""Roofline of ``make bench``: achieved GFLOP/s of each model as a fraction of the dense peak
measured in the same run, peak forward memory, and where the time goes per op class.

* :func:`dense_peak` -- the best GFLOP/s of a large channels-last oneDNN 1x1 convolution and of
  an MKL sgemm (``torch.mm``), float32, on the current torch threads;
* :func:`run_roofline` -- every model and setting of a suite's ``roofline`` section (sizes,
  batches, inference or training step, classifier or seg/det backbone), each through
  :func:`.measure.measure_model`, the peak measured before and after the models (the best of
  both is the peak of the run), then the memory / throughput ratio targets and the op-class
  profile;
* :func:`op_class_breakdown` -- one ``torch.profiler`` run of a callable, every event's self
  CPU time put in one op class by :func:`classify_event`; events no rule knows go to
  ``other`` under their own name, so nothing hides.

FLOPs = 2 x the multiply-adds of :func:`mmdwnet.analysis.count_flops` (on the unfused model, the
project's count, for inference rows too); a training step counts
3x the forward (backward = 2x forward), the usual convention.
"""
import contextlib
import copy
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from mmdwnet.analysis import count_flops

from .measure import infer_fn, measure_model, on_backend, timed, train_step_fn
from .suites import build_backbone, build_model

__all__ = ['dense_peak', 'OP_CLASSES', 'classify_event', 'op_class_breakdown',
           'roofline_fraction', 'run_roofline', 'quick_suite', 'GENERATOR_SCOPE', 'event_flops',
           'bound_analysis']

#: record_function name wrapped around modules that generate dynamic kernels (the modules
#: with a ``generate_weight`` method): their events other than aggregation are kernel generation.
GENERATOR_SCOPE = 'mmdwnet.benchmark::kernel_generation'

#: op class -> title (order of the report's columns).
OP_CLASSES = {
    'dense': 'dense products',
    'aggregation': 'depth-wise / dynamic aggregation',
    'generation': 'kernel generation',
    'elementwise': 'norms and element-wise',
    'movement': 'data movement',
    'framework': 'framework (autograd, Python scopes)',
    'other': 'other',
}

_RULES: List[Tuple[str, re.Pattern]] = [(cls, re.compile(pattern)) for cls, pattern in [
    ('aggregation', r'^mmdwnet::(local_aggregate|local_scatter|local_correlate|'
                    r'dynamic_depthwise)'),
    ('dense', r'^(aten::(mm|addmm|bmm|baddbmm|addbmm|matmul|linear|_addmm_activation|mv|addmv|'
              r'dot|einsum|mkldnn_linear|_mkldnn_linear\w*|linear_backward)|mkldnn::_linear_'
              r'pointwise\w*|mkl::\w+|aten::scaled_dot_product\w*|aten::_scaled_dot\w*)$'),
    ('elementwise', r'^aten::(layer_norm|native_layer_norm\w*|batch_norm|_batch_norm\w*|'
                    r'native_batch_norm\w*|_native_batch_norm\w*|group_norm|native_group_norm'
                    r'\w*|add_?|mul_?|div_?|sub_?|rsub|neg|gelu_?|gelu_backward|relu_?|'
                    r'threshold_backward|softmax|_softmax|_softmax_backward_data|sigmoid|tanh|'
                    r'rsqrt|sqrt|pow|exp|log|clamp\w*|where|addcmul_?|addcdiv_?|lerp_?|mean|sum|'
                    r'var_mean|std|norm|linalg_vector_norm|adaptive_avg_pool2d|'
                    r'_adaptive_avg_pool2d\w*|avg_pool2d\w*|max_pool2d\w*|dropout|native_dropout'
                    r'\w*|fill_|zero_|zeros_like|ones_like|full_like|_foreach_\w+|maximum|minimum'
                    r'|abs|sign|reciprocal|square|erf|hardtanh\w*|silu\w*|nll_loss\w*|'
                    r'log_softmax|_log_softmax\w*|cross_entropy\w*|masked_fill_?|eq|ne|lt|gt|le|'
                    r'ge|bitwise_\w+|logical_\w+|exp_|rand|rand_like|uniform_|bernoulli_?|floor|'
                    r'div_out)$'),
    ('movement', r'^aten::(copy_|_to_copy|to|contiguous|clone|permute|transpose_?|t|view|'
                 r'reshape|_reshape_alias|flatten|unflatten|expand|expand_as|as_strided_?|'
                 r'narrow|slice|select|index|index_select|gather|scatter_?\w*|cat|_cat|stack|'
                 r'split|split_with_sizes|chunk|unbind|roll|pad|constant_pad_nd|reflection_pad'
                 r'\w*|replication_pad\w*|unfold|im2col|col2im|empty|empty_like|empty_strided|'
                 r'new_empty\w*|new_zeros|new_ones|zeros|ones|full|squeeze_?|unsqueeze_?|detach'
                 r'_?|alias|lift_fresh|resize_|set_|_unsafe_view|unsafe_split\w*|flip|repeat|'
                 r'tile|index_put_?|_index_put_impl_|view_as|movedim|moveaxis|narrow_copy|'
                 r'slice_backward|select_backward|permute_copy|_pad_enum|arange|'
                 r'unfold_backward|masked_select|nonzero|channel_shuffle|pixel_shuffle|mT|'
                 r'resize_as_)$|^detach_?$'),
    ('framework', r'^(autograd::engine::evaluate_function: .*|.*Backward\d*|'
                  r'torch::autograd::AccumulateGrad|Optimizer\..*|mmdwnet\.benchmark::.*|'
                  r'aten::(size|item|_local_scalar_dense|result_type|is_same_size|is_nonzero|'
                  r'_has_compatible_shallow_copy_type|numel|dim|stride|requires_grad_|'
                  r'equal|is_contiguous|resolve_conj|resolve_neg|_nnpack_available)|## .*|'
                  r'<forward op>|\[memory\])$'),
]]
_CONV = re.compile(r'^aten::(conv2d|convolution|_convolution|mkldnn_convolution|'
                   r'convolution_backward|_convolution_mode|thnn_conv2d|_slow_conv2d_\w+|'
                   r'conv_depthwise2d|_conv_depthwise2d\w*|mkldnn_convolution_backward\w*|'
                   r'_mkldnn_convolution\w*|mkldnn_rnn\w*)$|^mkldnn::_convolution_pointwise\w*$')


def _depthwise(shapes: Sequence) -> bool:
    """Whether a convolution event's weight (the 4-D shape (O, 1, kh, kw), kh*kw > 1, among
    its first three inputs) is depth-wise."""
    for s in list(shapes)[1:3]:
        if isinstance(s, (list, tuple)) and len(s) == 4 and s[1] == 1 and s[2] * s[3] > 1:
            return True
    return False


def classify_event(name: str, input_shapes: Sequence = (), in_generator: bool = False) -> str:
    """The op class (a key of :data:`OP_CLASSES`) of one profiler event.

    ``input_shapes``: the event's recorded input shapes (separates depth-wise from dense
    convolutions); ``in_generator``: the event ran inside a kernel-generating module
    (:data:`GENERATOR_SCOPE`): anything but aggregation and framework events is then kernel
    generation."""
    if _CONV.match(name):
        cls = 'aggregation' if _depthwise(input_shapes) else 'dense'
    else:
        cls = next((c for c, pattern in _RULES if pattern.match(name)), 'other')
    if in_generator and cls not in ('aggregation', 'framework'):
        return 'generation'
    return cls


@contextlib.contextmanager
def generator_scopes(model: nn.Module):
    """Wrap every module with a ``generate_weight`` method (dynamic kernel generators) in a
    :data:`GENERATOR_SCOPE` record_function while it runs (forward hooks, removed after)."""
    from torch.autograd.profiler import record_function
    handles, open_scopes = [], []

    def pre(module, args):
        scope = record_function(GENERATOR_SCOPE)
        scope.__enter__()
        open_scopes.append(scope)

    def post(module, args, out):
        open_scopes.pop().__exit__(None, None, None)

    for module in model.modules():
        if callable(getattr(module, 'generate_weight', None)):
            handles += [module.register_forward_pre_hook(pre),
                        module.register_forward_hook(post)]
    try:
        yield len(handles) // 2
    finally:
        for h in handles:
            h.remove()


def _in_scope(event) -> bool:
    """Whether ``event`` ran inside a :data:`GENERATOR_SCOPE` (a forward op of a generator)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == GENERATOR_SCOPE:
            return True
        parent = parent.cpu_parent
    return False


def _in_backward_of(event, seqs) -> bool:
    """Whether ``event`` runs in the backward node of a forward op whose autograd sequence
    number is in ``seqs`` (profiler events carry the forward op's ``sequence_nr``)."""
    node = event
    while node is not None:
        if node.name.startswith('autograd::engine::evaluate_function') and \
                getattr(node, 'sequence_nr', -1) in seqs:
            return True
        node = node.cpu_parent
    return False


def event_flops(event: Any) -> int:
    """Floating-point operations of one profiler event (2 per multiply-add): torch's own count
    (``event.flops``, recorded with ``with_flops=True``: ``aten::mm``/``addmm``/``bmm``/
    ``baddbmm``/``conv2d`` ...) or, for ``mkldnn::_linear_pointwise`` (the dense fast path,
    which torch does not count), 2 x rows x in x out from its input shapes; 0 otherwise."""
    flops = getattr(event, 'flops', 0) or 0
    if flops or event.name != 'mkldnn::_linear_pointwise':
        return int(flops)
    shapes = list(getattr(event, 'input_shapes', None) or ())
    if len(shapes) < 2 or len(shapes[0]) < 1 or len(shapes[1]) != 2:
        return 0
    rows = 1
    for d in shapes[0][:-1]:
        rows *= d
    out_features, in_features = shapes[1]
    return 2 * rows * in_features * out_features


def breakdown_from_events(events) -> Dict[str, object]:
    """Per-class self CPU milliseconds of profiler ``events`` (``FunctionEvent``-like: name,
    input_shapes, self_cpu_time_total in us, cpu_parent, sequence_nr, flops); ``other`` names
    listed; ``dense_gflop``: the dense products' GFLOP (:func:`event_flops` of the events in the
    dense class; torch counts a convolution on ``aten::conv2d``, whose time is in its children).
    Kernel generation: the ops inside a :data:`GENERATOR_SCOPE` and, in a training step,
    the backward nodes of those ops (matched by autograd sequence number)."""
    events = list(events)
    scoped = {id(e) for e in events if _in_scope(e)}
    seqs = {e.sequence_nr for e in events
            if id(e) in scoped and getattr(e, 'sequence_nr', -1) >= 0}
    classes = {c: 0.0 for c in OP_CLASSES}
    other: Dict[str, float] = {}
    dense_flops = 0
    for e in events:
        ms = e.self_cpu_time_total / 1e3
        in_gen = id(e) in scoped or (bool(seqs) and _in_backward_of(e, seqs))
        cls = classify_event(e.name, getattr(e, 'input_shapes', None) or (), in_gen)
        classes[cls] += ms
        if cls == 'dense':
            dense_flops += event_flops(e)
        if cls == 'other':
            other[e.name] = other.get(e.name, 0.0) + ms
    total = sum(classes.values())
    return dict(ms=classes, total_ms=total, dense_gflop=dense_flops / 1e9,
                other=dict(sorted(other.items(), key=lambda kv: -kv[1])))


def bound_analysis(row: dict, profile: dict, peak_gflops: float,
                   target: Optional[float] = None) -> Dict[str, object]:
    """What bounds one inference row's fraction of the peak, from its op-class profile.

    The profile's shares of time are applied to the row's best time ``T`` (the profiler slows
    small ops more than large products, so the dense share is if anything underestimated).
    With ``F`` the row's GFLOP (the project's count), ``F_d`` the dense products' GFLOP (from
    the profile) and ``T_d`` their time:

    * ``dense_fraction`` = F_d / T_d / peak: the dense products' own fraction of the peak;
    * ``ceiling_rest_free`` = F / T_d / peak: the model's fraction if every other op took no
      time (what the dense products alone allow);
    * ``ceiling_dense_at_peak`` = F / (T - T_d + F_d / peak) / peak: if the dense products
      ran at the peak and nothing else changed (what the other ops alone allow);
    * ``bound``: for a missed ``target``: ``'dense'`` when even free other ops stay below it,
      ``'rest'`` (named by ``largest_rest``, the largest other class) when even dense products
      at the peak stay below it, ``'either'`` when each alone would reach it; None when there
      is no target or it is met.
    """
    total = profile['total_ms'] or 1.0
    share = profile['ms']['dense'] / total
    t, f, f_d = row['best_s'], row['gflop'], profile.get('dense_gflop', 0.0)
    t_d = t * share
    rest = {c: ms for c, ms in profile['ms'].items() if c != 'dense'}
    largest = max(rest, key=rest.get) if rest else None
    res = dict(dense_share=share, largest_rest=largest,
               largest_rest_share=(rest[largest] / total) if largest else 0.0,
               dense_fraction=(f_d / t_d / peak_gflops) if t_d > 0 and f_d else None,
               ceiling_rest_free=(f / t_d / peak_gflops) if t_d > 0 else None,
               ceiling_dense_at_peak=f / (t - t_d + f_d / peak_gflops) / peak_gflops,
               bound=None)
    if target is not None and row['fraction'] < target:
        if res['ceiling_rest_free'] is not None and res['ceiling_rest_free'] < target:
            res['bound'] = 'dense'
        elif res['ceiling_dense_at_peak'] < target:
            res['bound'] = 'rest'
        else:
            res['bound'] = 'either'
    return res


def op_class_breakdown(fn: Callable[[], None], model: Optional[nn.Module] = None,
                       warmup: int = 1) -> Dict[str, object]:
    """Profile one ``fn()`` (after ``warmup`` calls) and sum self CPU time per op class;
    ``model``: the module ``fn`` runs, whose kernel generators are scoped."""
    from torch.profiler import ProfilerActivity, profile
    for _ in range(warmup):
        fn()
    scopes = generator_scopes(model) if model is not None else contextlib.nullcontext()
    with scopes, profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                         with_flops=True) as prof:
        fn()
    return breakdown_from_events(prof.events())


# ---------------------------------------------------------------------------- peak and rows
def dense_peak(rounds: int = 5, quick: bool = False) -> Dict[str, float]:
    """Dense float32 GFLOP/s on the current torch threads: the best of ``rounds`` calls of a
    channels-last oneDNN 1x1 convolution (8x256x56x56 -> 1024 channels) and of an MKL sgemm
    (2048^3; ``quick``: small shapes, for tests). Returns conv, sgemm, peak (their max)."""
    n, c, hw, o, m = (2, 64, 14, 128, 256) if quick else (8, 256, 56, 1024, 2048)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, hw, hw, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(o, c, 1, 1, generator=gen).contiguous(memory_format=torch.channels_last)
    a, b = torch.randn(m, m, generator=gen), torch.randn(m, m, generator=gen)
    res = {}
    with torch.no_grad():
        for name, fn, flop in (('conv', lambda: F.conv2d(x, w), 2 * n * hw * hw * c * o),
                               ('sgemm', lambda: torch.mm(a, b), 2 * m**3)):
            fn()
            res[name] = flop / min(timed(fn) for _ in range(rounds)) / 1e9
    res['peak'] = max(res['conv'], res['sgemm'])
    return res


def roofline_fraction(gflop: float, seconds: float, peak_gflops: float) -> Tuple[float, float]:
    """(achieved GFLOP/s, fraction of ``peak_gflops``) of ``gflop`` done in ``seconds``."""
    if seconds <= 0 or peak_gflops <= 0:
        raise ValueError(f'seconds and peak must be > 0, got {seconds}, {peak_gflops}')
    achieved = gflop / seconds
    return achieved, achieved / peak_gflops


def _module(entry, setting, arch, fused):
    size = tuple(setting['size'])
    if setting.get('part', 'model') == 'model':
        return build_model(entry, size, arch, fused)
    return build_backbone(entry, setting['part'], size, arch, fused)


def _with_backend(entry, fn):
    backend = entry.get('ops_backend')
    return fn if backend is None else on_backend(fn, backend)


def quick_suite(suite: dict, size: int = 224, batch: int = 2) -> dict:
    """``suite`` shrunk for tests: every setting at ``size`` px (window models need 32x the
    window, 224 for Swin-T's 7) and at most ``batch`` images everywhere (use with a tiny
    ``arch``: seconds)."""
    suite = copy.deepcopy(suite)
    roof = suite['roofline']
    for s in roof['settings'].values():
        s['size'] = [size, size]
        s['batch'] = min(s['batch'], batch)
    for t in roof.get('throughput', []):
        t['batch'] = min(t['batch'], batch)
    return suite


def run_roofline(suite: dict, rounds: int = 3, warmup: int = 1, arch: Optional[dict] = None,
                 models: Optional[Sequence[str]] = None, profile: bool = True,
                 quick_peak: bool = False, log: Callable[[str], None] = print) -> dict:
    """Measure the suite's ``roofline`` section. ``arch`` shrinks every model (quick runs);
    ``models`` overrides the suite's list. Returns the measurements as plain data (rendered by
    :func:`.report.roofline_lines`)."""
    roof = suite['roofline']
    names = list(models or roof['models'])
    start, load = time.perf_counter(), [os.getloadavg()[0]]
    peaks = [dense_peak(quick=quick_peak)]
    rows: Dict[str, Dict[str, dict]] = {}
    for name in names:
        entry = suite['models'][name]
        rows[name] = {}
        for sname, setting in roof['settings'].items():
            log(f'roofline: {name} {sname}')
            train = setting['mode'] == 'train'
            module = _module(entry, setting, arch, fused=not train)
            shape = (3, *setting['size'])
            # the project's count, on the unfused model (as get_flops and the legacy tables)
            macs = count_flops(module if train else _module(entry, setting, arch, False), shape)
            rows[name][sname] = measure_model(
                module, shape, setting['batch'], setting['mode'], rounds, warmup, flops=macs,
                memory=not train, ops_backend=entry.get('ops_backend'))
    for m in roof.get('memory', []):  # references not among the models: measure memory only
        setting = roof['settings'][m['setting']]
        for name in (m['model'], m['reference']):
            if m['setting'] in rows.get(name, {}):
                continue
            log(f'roofline: memory of {name} {m["setting"]}')
            entry = suite['models'][name]
            module = _module(entry, setting, arch, fused=True)
            rows.setdefault(name, {})[m['setting']] = measure_model(
                module, (3, *setting['size']), setting['batch'], rounds=1, warmup=1, flops=0,
                ops_backend=entry.get('ops_backend'))
    comparisons = []
    for t in roof.get('throughput', []):
        log(f'roofline: {t["model"]} vs {t["reference"]}')
        speeds = {}
        for name in (t['model'], t['reference']):
            entry = suite['models'][name]
            model = build_model(entry, tuple(t['size']), None, fused=True)
            r = measure_model(model, (3, *t['size']), t['batch'], rounds=rounds, warmup=warmup,
                              flops=0, memory=False, ops_backend=entry.get('ops_backend'))
            speeds[name] = r['images_per_s']
        comparisons.append(dict(t, images_per_s=speeds,
                                ratio=speeds[t['model']] / speeds[t['reference']]))
    profiles = {}
    if profile:
        for name in names:
            entry = suite['models'][name]
            for sname in roof.get('profile', []):
                setting = roof['settings'][sname]
                log(f'roofline: profile {name} {sname}')
                train = setting['mode'] == 'train'
                module = _module(entry, setting, arch, fused=not train)
                x = torch.randn(setting['batch'], 3, *setting['size'])
                fn = train_step_fn(module, x) if train else infer_fn(module, x)
                profiles.setdefault(name, {})[sname] = op_class_breakdown(
                    _with_backend(entry, fn), module)
    peaks.append(dense_peak(quick=quick_peak))
    load.append(os.getloadavg()[0])
    peak = {k: max(p[k] for p in peaks) for k in peaks[0]}
    for per_setting in rows.values():
        for r in per_setting.values():
            r['fraction'] = roofline_fraction(r['gflop'], r['best_s'], peak['peak'])[1] \
                if r['gflop'] else None
    return dict(peak=peak, peaks=peaks, rows=rows, models=names, comparisons=comparisons,
                profiles=profiles,
                threads=torch.get_num_threads(), rounds=rounds, load=load, cpus=os.cpu_count(),
                seconds=time.perf_counter() - start,
                labels={n: suite['models'][n]['label'] for n in suite['models']})

