"""Markdown (and chart) rendering of the benchmark reports: the CPU tables (``make bench``), the
CUDA report (``make bench-gpu``), and sections spliced into an existing report between markers
(the roofline of ``make bench``, the compiled-training section of ``make bench-compile``).
Nothing here measures; every function takes the measurements and the suite (targets) as data.
"""
import datetime
import os
import os.path as osp
import platform
import re
import statistics

import torch

from .suites import NOTES_FILE

# ---------------------------------------------------------------------------- report
def ratio_stats(info, name, setting, reference=None):
    """(median, min, max) over rounds of the throughput ratio of ``name`` to ``reference``
    (default: the run's reference, ``info['reference']``) in ``setting``; None if unmeasured."""
    reference = reference or info['reference']
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
    lo, hi = min(values) * 1e3, max(values) * 1e3
    return f'{statistics.median(values) * 1e3:.0f} ({lo:.0f}-{hi:.0f})'


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


def write_report(info, args, targets):
    """The CPU report ``args.out`` (and its chart) from :func:`.measure.run`'s ``info``;
    ``targets``: the suite (:func:`.suites.load_suite`). Returns (report, chart) paths."""
    out = args.out
    png = osp.splitext(out)[0] + '.png'
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
        'the step. I-D-DW also keeps a reused kernel workspace of '
        f'{info.get("workspace_mib", 0):.0f}'
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
                                                                  info['arch_reference'])]
    if arch:  # empty when the run has no mmdwnet Swin-T
        lines += ['', '## Throughput relative to mmdwnet Swin-T (same implementation, only the '
                  'mixer differs)', '',
                  'The paper\'s comparison: every model below shares the patch embedding, '
                  'patch merging, FFN, head and their implementation with mmdwnet\'s Swin-T, so '
                  'these ratios are those of the spatial mixers alone.', '',
                  '| model | ' + ' | '.join(titles[s] for s in arch) + ' | paper (V100) |',
                  '|' + ' --- |' * (len(arch) + 2)]
        for n in names:
            if n in (info['arch_reference'], info['reference']):
                continue
            row = [info['models'][n]['label']]
            row += [fmt_ratio(ratio_stats(info, n, s, info['arch_reference'])) for s in arch]
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
                     f'({stats[1]:.2f}-{stats[2]:.2f}) | '
                     f'{"yes" if stats[0] >= target else "**no**"}'
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
                        if n == info['reference'] else '') for n in names], fontsize=8)
    ax.set_ylabel('throughput / mmpretrain Swin-T')
    ax.set_title('CPU throughput relative to mmpretrain Swin-T (median, min-max)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- GPU report
GPU_TITLES = dict(infer='inference fp32', infer_amp='inference AMP (fp16)',
                  infer_amp_cl='inference AMP, channels-last', train_amp='train step AMP')
GPU_SETTINGS = tuple(GPU_TITLES)  # the CUDA settings of .measure.Runner, in report order


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


def write_gpu_report(runs, ops, args, seconds, targets):
    """The CUDA report: targets, per-batch ratios/absolute numbers/memory, ops."""
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



# ---------------------------------------------------------------------------- sections
def write_section(path, text, begin, end):
    """Replace the part of ``path`` between the ``begin`` / ``end`` marker lines by ``text``
    (which carries both markers), or append it; the file is written atomically."""
    old = open(path).read() if osp.isfile(path) else ''
    pattern = re.compile(re.escape(begin) + '.*?' + re.escape(end) + r'\n?', re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else \
        old.rstrip('\n') + ('\n\n' if old else '') + text
    from mmdwnet.utils.fileio import atomic_open
    with atomic_open(path) as f:
        f.write(new)


COMPILE_BEGIN, COMPILE_END = '<!-- compile-train -->', '<!-- /compile-train -->'
ROOFLINE_BEGIN, ROOFLINE_END = '<!-- roofline -->', '<!-- /roofline -->'


def compile_train_section(rows, args, seconds):
    """The ``make bench-compile`` training section from
    :func:`.measure.measure_compiled_training` rows (name -> (first, times))."""
    lines = [COMPILE_BEGIN, '## Training with torch.compile (backbone compiled, optimizer eager)',
             '', f'Written by `python tools/analysis_tools/benchmark_compile_train.py --out '
             f'docs/benchmark_compile.md --rounds {args.rounds} --threads {args.threads}` on '
             f'{datetime.date.today().isoformat()} in {seconds:.0f} s; the same machine as above '
             '(2 shared CPU cores, no GPU), so single steps are noisy.', '',
             f'One step: loss forward + backward + AdamW (`paramwise_cfg`, gradient clipping '
             f'5.0) at batch {args.batch}, {args.img_size}x{args.img_size}, float32, '
             f'{args.threads} torch threads, Mixup/CutMix off. "compiled": `model.backbone` '
             f'compiled in place with `torch.compile(backend={args.backend!r})`, as '
             '`CompileModulesHook` does when a config sets `compile=True` (mmengine\'s own '
             '`compile=True` compiles the optimizer step too and fails on these param groups). '
             f'Median (min-max) of {args.rounds} alternating rounds after one warm-up step.', '',
             '| model | eager step (s) | compiled step (s) | speed-up | first compiled step '
             '(compilation, s) |',
             '| --- | --- | --- | --- | --- |']
    for name, (first, times) in rows.items():
        med = {k: statistics.median(v) for k, v in times.items()}
        spread = {k: f'{min(v):.2f}-{max(v):.2f}' for k, v in times.items()}
        lines.append(f'| {name} | {med["eager"]:.2f} ({spread["eager"]}) | '
                     f'{med["compiled"]:.2f} ({spread["compiled"]}) | '
                     f'{med["eager"] / med["compiled"]:.2f}x | {first["compiled"]:.0f} |')
    lines += ['', COMPILE_END]
    return '\n'.join(lines) + '\n'


def _setting_title(name, s):
    h, w = s['size']
    part = {'model': 'classifier', 'seg': 'seg backbone', 'det': 'det backbone'}[
        s.get('part', 'model')]
    mode = 'training step' if s['mode'] == 'train' else 'inference'
    return f'{mode} b{s["batch"]} {h}x{w} ({part})'


def _met(ok):
    return 'met' if ok else '**miss**'


def roofline_lines(res, suite, command=''):
    """Markdown of :func:`.roofline.run_roofline`'s result, targets from ``suite['roofline']``
    (each row: measured vs target and met / miss)."""
    roof = suite['roofline']
    settings, targets = roof['settings'], roof.get('targets', {})
    labels, peak = res['labels'], res['peak']
    start, end = res['peaks'][0], res['peaks'][-1]
    lines = ['## Roofline: achieved GFLOP/s against the dense peak of the same run', '']
    if command:
        lines += [f'Written by `{command}` on {datetime.date.today().isoformat()} in '
                  f'{res["seconds"]:.0f} s, float32, {res["threads"]} torch threads, fused '
                  f'inference, best of {res["rounds"]} timed calls after a warm-up.', '']
    lines += [f'- Dense peak of this run: **{peak["peak"]:.0f} GFLOP/s** = best of a '
              f'channels-last oneDNN 1x1 convolution ({peak["conv"]:.0f}) and an MKL sgemm '
              f'({peak["sgemm"]:.0f}), measured before the models ({start["peak"]:.0f}) and '
              f'after them ({end["peak"]:.0f}).',
              f'- Load: {res.get("cpus", "?")} logical cores shared with other jobs; 1-minute '
              'load average ' + ' -> '.join(f'{x:.1f}' for x in res.get('load', []))
              + ' (start -> end). Absolute GFLOP/s move with the load; "% of peak" (peak of '
              'the same run) is the robust figure.'] + ([
              f'- **The peak moved from {start["peak"]:.0f} to {end["peak"]:.0f} GFLOP/s within '
              'the run: the load changed while measuring, the fractions below (against the '
              'higher peak) are lower bounds and single rows are unreliable.**']
              if min(start['peak'], end['peak']) < 0.8 * peak['peak'] else []) + [
              '- FLOPs = 2 x the multiply-adds of `mmdwnet.analysis.count_flops` (unfused '
              'model) at that size; '
              'a training step (forward, backward, AdamW; loss = mean square of the outputs) '
              'counts 3x the forward. "% of peak" compares with the peak of the same run, so '
              'it holds under a shared machine\'s load better than the absolute numbers.',
              '- seg / det backbone: the backbone of the model\'s segmentation / detection '
              'config (every stage out, pretrained weights not loaded); peak memory: bytes '
              'allocated during one forward above the level at its start.', '',
              '| model | setting | GFLOP per call | best (ms) | GFLOP/s | % of peak | target | '
              'met | peak mem forward (MiB) |', '|' + ' --- |' * 9]
    for name, per in res['rows'].items():
        for sname, r in per.items():
            if r.get('fraction') is None:
                continue
            target = targets.get(sname, {}).get(name)
            tcell = f'>= {target:.0%}' if target is not None else ''
            met = _met(r['fraction'] >= target) if target is not None else ''
            mem = fmt_mib(r.get('peak_mib'))
            lines.append(f'| {labels[name]} | {_setting_title(sname, settings[sname])} | '
                         f'{r["gflop"]:.1f} | {r["best_s"] * 1e3:.1f} | '
                         f'{r["gflop"] / r["best_s"]:.0f} | **{r["fraction"]:.0%}** | {tcell} | '
                         f'{met} | {mem} |')
    missing = [(s, n) for s, per in targets.items() for n in per
               if s not in res['rows'].get(n, {})]
    if missing:
        lines += ['', 'Targets not measured in this run: ' + ', '.join(
            f'{n} {s}' for s, n in missing) + '.']
    lines += _ratio_lines(res, roof, labels, settings)
    arch = suite.get('arch_reference')
    if arch in res['rows']:
        lines += ['', '### Paper-shape ratios: images/s relative to mmdwnet Swin-T (same run)',
                  '', '| model | ' + ' | '.join(_setting_title(s, settings[s]) for s in settings)
                  + ' |', '|' + ' --- |' * (len(settings) + 1)]
        ref = res['rows'][arch]
        for name, per in res['rows'].items():
            if name == arch or name not in res.get('models', res['rows']):
                continue
            lines.append(f'| {labels[name]} | ' + ' | '.join(
                f'{per[s]["images_per_s"] / ref[s]["images_per_s"]:.2f}x'
                if s in per and s in ref else 'n/a' for s in settings) + ' |')
    if res['profiles']:
        lines += op_class_lines(res['profiles'], labels, settings, roof.get('owners', {}))
        lines += bound_lines(res, roof, labels)
    for item in roof.get('not_measured', []):
        lines += ['', f'- Not measured by this suite: {item}.']
    return lines


def _ratio_lines(res, roof, labels, settings):
    lines = []
    if roof.get('memory'):
        lines += ['', '### Peak forward memory ratios', '', '| model | reference | setting | '
                  'model (MiB) | reference (MiB) | ratio | target | met |',
                  '|' + ' --- |' * 8]
        for m in roof['memory']:
            a = res['rows'].get(m['model'], {}).get(m['setting'], {}).get('peak_mib')
            b = res['rows'].get(m['reference'], {}).get(m['setting'], {}).get('peak_mib')
            ratio = a / b if a is not None and b else None
            lines.append(f'| {labels.get(m["model"], m["model"])} | '
                         f'{labels.get(m["reference"], m["reference"])} | '
                         f'{_setting_title(m["setting"], settings[m["setting"]])} | '
                         f'{fmt_mib(a)} | {fmt_mib(b)} | '
                         + ('n/a' if ratio is None else f'**{ratio:.2f}x**')
                         + f' | <= {m["max"]:.2f}x | '
                         + ('n/a' if ratio is None else _met(ratio <= m['max'])) + ' |')
    if res['comparisons']:
        lines += ['', '### Throughput ratios (inference, fused)', '', '| model | reference | '
                  'size, batch | model (images/s) | reference (images/s) | ratio | target | '
                  'met |', '|' + ' --- |' * 8]
        for c in res['comparisons']:
            ips = c['images_per_s']
            lines.append(f'| {labels[c["model"]]} | {labels[c["reference"]]} | '
                         f'{c["size"][0]}x{c["size"][1]}, '
                         f'b{c["batch"]} | {ips[c["model"]]:.0f} | {ips[c["reference"]]:.0f} | '
                         f'**{c["ratio"]:.2f}x** | >= {c["min"]:.2f}x | '
                         f'{_met(c["ratio"] >= c["min"])} |')
    return lines


def op_class_lines(profiles, labels, settings, owners):
    """Per model and profiled setting: % of self CPU time per op class, then the owners and
    every unclassified ("other") event by name."""
    from .roofline import OP_CLASSES
    lines = ['', '### Where the time goes (torch.profiler self CPU time per op class)', '',
             'Each profiler event\'s self time is put in one class by '
             '`mmdwnet.benchmark.roofline.classify_event` (by op name; convolutions by weight '
             'shape: depth-wise or dense; anything inside a module with a `generate_weight` '
             'method, except aggregation ops, is kernel generation). The fused I-D-DW op '
             '`mmdwnet::local_aggregate_pointwise` includes its kernel-generating 1x1 product '
             'and counts as aggregation; in a training step the backward of the generators\' '
             'ops (matched by autograd sequence number) is kernel generation too. Percent of '
             'the profiled total.', '',
             '| model | setting | ' + ' | '.join(OP_CLASSES.values()) + ' | total (ms) |',
             '|' + ' --- |' * (len(OP_CLASSES) + 3)]
    others = []
    for name, per in profiles.items():
        for sname, p in per.items():
            total = p['total_ms'] or 1.0
            lines.append(f'| {labels[name]} | {_setting_title(sname, settings[sname])} | '
                         + ' | '.join(f'{100 * p["ms"][c] / total:.1f}%' for c in OP_CLASSES)
                         + f' | {p["total_ms"]:.0f} |')
            if p['other']:
                others.append(f'- {labels[name]}, {sname}: ' + ', '.join(
                    f'`{n}` {ms:.1f} ms' for n, ms in p['other'].items()))
    if owners:
        lines += ['', 'Owners: ' + '; '.join(f'{OP_CLASSES[c]}: {o}' for c, o in owners.items()
                                               if c in OP_CLASSES) + '.']
    lines += ['', 'Unclassified ("other") events, by name:', ''] + (others or ['- none'])
    return lines


def _pct(x):
    return 'n/a' if x is None else f'{x:.0%}'


def bound_lines(res, roof, labels):
    """Per profiled inference row: what bounds its fraction of the peak
    (:func:`.roofline.bound_analysis`): the dense products' share of the time and their own
    fraction of the peak, the two ceilings, and for a missed target what caps it."""
    from .roofline import OP_CLASSES, bound_analysis
    settings, targets = roof['settings'], roof.get('targets', {})
    body = []
    for name, per in res['profiles'].items():
        for sname, profile in per.items():
            row = res['rows'].get(name, {}).get(sname)
            if settings[sname]['mode'] != 'infer' or not row or row.get('fraction') is None:
                continue
            target = targets.get(sname, {}).get(name)
            b = bound_analysis(row, profile, res['peak']['peak'], target)
            rest = f'{OP_CLASSES[b["largest_rest"]]} ({b["largest_rest_share"]:.0%} of the time)' \
                if b['largest_rest'] else 'n/a'
            verdict = {None: '' if target is None else 'met',
                       'dense': '**dense products** at these shapes',
                       'rest': f'**the other ops**: {rest}',
                       'either': 'either would reach it alone'}[b['bound']]
            body.append(f'| {labels[name]} | {_setting_title(sname, settings[sname])} | '
                        f'**{row["fraction"]:.0%}** | '
                        + (f'>= {target:.0%}' if target is not None else '')
                        + f' | {b["dense_share"]:.0%} | {_pct(b["dense_fraction"])} | '
                        f'{_pct(b["ceiling_rest_free"])} | {_pct(b["ceiling_dense_at_peak"])} | '
                        f'{verdict} |')
    if not body:
        return []
    return ['', '### What bounds each inference row (from the profile)', '',
            'T = the row\'s best time, shared among the op classes as in its profile; F = its '
            'FLOPs; F_d = the dense products\' FLOPs (torch\'s count, `with_flops=True`, plus '
            'the oneDNN linears of the dense fast path from their shapes). "Dense products, % of '
            'peak" = F_d / T_d / peak, their own efficiency at the model\'s shapes. Ceilings: '
            'the model\'s % of peak if every other op took no time (F / T_d), and if the dense '
            'products ran at the peak with everything else unchanged. A target above the first '
            'ceiling is bound by the dense products\' efficiency (oneDNN / MKL at these '
            'shapes); above the second, by the other ops (the largest class named).', '',
            '| model | setting | % of peak | target | dense products, share of time | '
            'dense products, % of peak | ceiling, other ops free | ceiling, dense at peak | '
            'bound by |', '|' + ' --- |' * 9] + body


def roofline_section(res, suite, command=''):
    """:func:`roofline_lines` between the roofline markers (for :func:`write_section`)."""
    return '\n'.join([ROOFLINE_BEGIN] + roofline_lines(res, suite, command)
                     + ['', ROOFLINE_END]) + '\n'
