"""Training-step speed with the backbone compiled (``CompileModulesHook``'s way) against eager.

    python tools/analysis_tools/benchmark_compile_train.py --out docs/benchmark_compile.md

One training step = ``ImageClassifier.loss`` forward, backward, and the config's optimizer
wrapper (AdamW with ``paramwise_cfg``, gradient clipping) -- what mmengine's ``train_step`` does
after the data preprocessor. "compiled" compiles ``model.backbone`` in place
(``nn.Module.compile``) and keeps the optimizer step eager, as ``CompileModulesHook`` does in a
training run (mmengine's own ``compile=True`` fails on these optimizer settings). Both models
start from the same weights; rounds alternate eager / compiled; the first compiled step (graph
capture and code generation) is reported separately. The section is written into ``--out``
between ``<!-- compile-train -->`` markers (replaced on a rerun, the rest of the file kept).
"""
import argparse
import copy
import os.path as osp
import re
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BEGIN, END = '<!-- compile-train -->', '<!-- /compile-train -->'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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


def build(config):
    """(model in train mode, optimizer wrapper) of ``config`` without batch augments."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmdwnet  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    cfg.model.train_cfg = None  # Mixup / CutMix draw random numbers per step: off
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    return model, cfg.optim_wrapper


def train_step(model, wrapper, inputs, samples):
    with wrapper.optim_context(model):
        losses = model.loss(inputs, samples)
    loss, _ = model.parse_losses(losses)
    wrapper.update_params(loss)


def measure(config, args):
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample
    eager, wrapper_cfg = build(config)
    compiled = copy.deepcopy(eager)
    from mmdwnet.utils import inductor_compat
    inductor_compat.install()  # dynamic shapes on CPU; import mmdwnet leaves torch alone
    compiled.backbone.compile(backend=args.backend)
    wrappers = {'eager': build_optim_wrapper(eager, copy.deepcopy(wrapper_cfg)),
                'compiled': build_optim_wrapper(compiled, copy.deepcopy(wrapper_cfg))}
    models = {'eager': eager, 'compiled': compiled}
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=gen)
    labels = torch.randint(0, eager.head.num_classes, (args.batch, ), generator=gen)
    samples = [DataSample().set_gt_label(int(label)) for label in labels]
    first, times = {}, {k: [] for k in models}
    for name in models:  # warm-up; the compiled model's first step compiles
        start = time.perf_counter()
        train_step(models[name], wrappers[name], inputs, samples)
        first[name] = time.perf_counter() - start
    for _ in range(args.rounds):
        for name in models:
            start = time.perf_counter()
            train_step(models[name], wrappers[name], inputs, samples)
            times[name].append(time.perf_counter() - start)
    return first, times


def section(rows, args, seconds):
    lines = [BEGIN, '## Training with torch.compile (backbone compiled, optimizer eager)', '',
             f'Written by `python tools/analysis_tools/benchmark_compile_train.py --out '
             f'docs/benchmark_compile.md --rounds {args.rounds} --threads {args.threads}` on '
             f'{time.strftime("%Y-%m-%d")} in {seconds:.0f} s; the same machine as above (2 '
             'shared CPU cores, no GPU), so single steps are noisy.', '',
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
    lines += ['', END]
    return '\n'.join(lines) + '\n'


def write_section(path, text):
    """Replace the marked section of ``path`` (or append it); atomic write."""
    old = open(path).read() if osp.isfile(path) else ''
    pattern = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END) + r'\n?', re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else \
        old.rstrip('\n') + ('\n\n' if old else '') + text
    from mmdwnet.utils.fileio import atomic_open
    with atomic_open(path) as f:
        f.write(new)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = {}
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0]
        print(f'measuring {name} ...', flush=True)
        rows[name] = measure(config, args)
    text = section(rows, args, time.time() - start)
    print(text)
    if args.out:
        write_section(args.out, text)
        print(f'wrote the section into {args.out}', file=sys.stderr)


if __name__ == '__main__':
    main()
