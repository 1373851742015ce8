"""Transfer study: does the classification checkpoint help detection and segmentation?

    python tools/analysis_tools/downstream_transfer.py [--work-dir work_dirs/study]
        [--scenes-root DIR] [--models DWNet I-D-DWNet Swin]
        [--inits pretrained scratch] [--tasks det seg] [--seeds 0] [--short]
        [--jobs N] [--out docs/downstream.md]

For each task (Cascade Mask R-CNN: ``coco/bbox_mAP``, ``coco/segm_mAP``; UPerNet: ``mIoU``),
backbone and seed, the digit-scenes config is fine-tuned (``demo/downstream.py``: tools/train.py,
then tools/test.py) (a) from the digits classification checkpoint of the same nano arch
(``configs/classification/digits/``; trained first when ``--cls-work-dir`` lacks it) and
(b) from scratch, on the same schedule.  ``Swin`` is the control built only from the toolboxes'
own modules: mmdet's / mmseg's ``SwinTransformer`` at the same nano size (embed 32, depths
1-1-2-1, window 7) in the same configs (only the backbone replaced); it has no digits
classification checkpoint here, so it runs from scratch only.

Runs go side by side, one per core by default (``--jobs``; each a process with
``OMP_NUM_THREADS`` threads, one unless set; every output line behind its run's tag); the
classification checkpoints they need are made first.  The run ``make demo`` already did
(DWNet from its classification checkpoint, seed 0, same scenes, schedule and config) is
taken from the demo's ``results.json`` (``--cls-work-dir``) instead of being trained again.
Every finished run is kept as ``WORK_DIR/<task>_<model>_<init>_seed<k>/result.json`` and is not
run again, so an interrupted study resumes where it stopped.  The report (mean and spread over
seeds, the runs' times, a plot) replaces the text between the study markers of ``--out`` (the
rest of the file is kept) and the plot is written next to it; rows of the report it replaces
that this study did not run (other tasks, backbones or inits; same schedule and scenes) are kept,
marked "earlier study".

This module holds the study's options, its Swin control config and its report (summary, table,
plot, the section of ``--out``); running the fine-tunings (``demo/downstream.py``) stays in the
tool ``tools/analysis_tools/downstream_transfer.py``.
"""
import argparse
import os
import statistics
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ['TOOL', 'TASK_NAMES', 'METRICS', 'MODELS', 'INITS', 'BEGIN', 'END', 'SWIN',
           'parse_args', 'swin_config', 'summarise', 'earlier_summary', 'report', 'plot',
           'write_section']

TOOL = 'tools/analysis_tools/downstream_transfer.py'
TASK_NAMES = {'det': 'Cascade Mask R-CNN', 'seg': 'UPerNet'}
METRICS = {'det': ('coco/bbox_mAP', 'coco/segm_mAP'), 'seg': ('mIoU', )}
MODELS = ('DWNet', 'I-D-DWNet', 'Swin')
INITS = ('pretrained', 'scratch')
BEGIN, END = '<!-- transfer-study:begin -->', '<!-- transfer-study:end -->'
# the toolboxes' own Swin at the nano size of the digits configs
SWIN = dict(_delete_=True, type='SwinTransformer', embed_dims=32, depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8], window_size=7, drop_path_rate=0.1,
            out_indices=(0, 1, 2, 3), init_cfg=None)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The options of ``tools/analysis_tools/downstream_transfer.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/study', help='runs and their results')
    parser.add_argument('--scenes-root', default=None,
                        help='digit scenes (default: data/digit_scenes, or '
                        'data/digit_scenes-short with --short)')
    parser.add_argument('--cls-work-dir', default='work_dirs/demo',
                        help='where the classification checkpoints are (make demo writes them)')
    parser.add_argument('--digits-root', default='data/digits',
                        help='digits image folder, for training a missing checkpoint')
    parser.add_argument('--models', nargs='+', choices=MODELS, default=list(MODELS))
    parser.add_argument('--inits', nargs='+', choices=INITS, default=list(INITS))
    parser.add_argument('--tasks', nargs='+', choices=('det', 'seg'), default=['det', 'seg'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0])
    parser.add_argument('--short', action='store_true', help='the demo\'s shortened schedule')
    parser.add_argument('--jobs', type=int, default=None,
                        help='runs side by side, each a process with OMP_NUM_THREADS threads '
                        '(default: as many as the CPUs hold at that many threads each)')
    parser.add_argument('--out', default='docs/downstream.md', help='report (section replaced)')
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: at least 1')
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds {args.seeds}: each seed once')
    if args.scenes_root is None:
        args.scenes_root = 'data/digit_scenes' + ('-short' if args.short else '')
    return args


def swin_config(task: str, work_dir: Union[str, Path], base: Union[str, Path]) -> Path:
    """A config that inherits ``base`` (the task's DWNet digit-scenes config), backbone -> the
    toolbox's Swin (:data:`SWIN`); written (atomically) into ``work_dir``, returned."""
    path = Path(work_dir) / f'{task}_swin-nano_digit-scenes.py'
    text = (f'# {TASK_NAMES[task]} on the digit scenes with the toolbox\'s own '
            f'SwinTransformer (nano), written by {Path(TOOL).name}\n'
            f'_base_ = [{str(base)!r}]\nmodel = dict(backbone={SWIN!r})\n')
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix('.tmp')
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def summarise(runs: Sequence[dict]) -> Dict[Tuple[str, str, str], Dict[str, Any]]:
    """{(task, model, init): {metric: (mean, spread, n)}}; spread = sample std (0 for n=1)."""
    groups = {}
    for run in runs:
        groups.setdefault((run['task'], run['model'], run['init']), []).append(run)
    out = {}
    for key, group in groups.items():
        out[key] = {}
        for metric in METRICS[key[0]]:
            values = [r['metrics'][metric] for r in group]
            spread = statistics.stdev(values) if len(values) > 1 else 0.
            out[key][metric] = (statistics.mean(values), spread, len(values))
        out[key]['seconds'] = statistics.mean(r['train_seconds'] for r in group)
    return out


def _setting(args: argparse.Namespace) -> str:
    """The schedule and scenes of a study, as its report states them."""
    schedule = 'shortened (--short)' if args.short else 'the configs\' full schedules'
    return f'{schedule}; scenes: `{args.scenes_root}`'


def _section(text: str) -> Optional[str]:
    return text.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in text and END in text else None


def earlier_summary(out: Union[str, Path], args: argparse.Namespace
                    ) -> Dict[Tuple[str, str, str], Dict[str, Any]]:
    """The entries (as :func:`summarise` gives them) of the report section already in ``out``
    when it was measured with the same schedule and scenes as ``args``; else {}.

    A study of some tasks, backbones or inits keeps the other rows of the report (marked as
    earlier in the table) instead of dropping them; a study on another schedule or other
    scenes replaces them all."""
    out = Path(out)
    section = _section(out.read_text()) if out.is_file() else None
    if section is None or f'({_setting(args)};' not in section:
        return {}
    task_of = {name: task for task, name in TASK_NAMES.items()}
    entries = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) < 8 or cells[0] not in task_of or cells[3] not in METRICS[task_of[cells[0]]]:
            continue
        try:
            mean, spread, n, seconds = float(cells[4]), float(cells[5]), int(cells[6]), \
                float(cells[7])
        except ValueError:
            continue
        entry = entries.setdefault((task_of[cells[0]], cells[1], cells[2]), {})
        entry[cells[3]] = (mean, spread, n)
        entry['seconds'] = seconds
    # an entry lacking one of its task's metrics is not a row this module wrote
    return {k: v for k, v in entries.items() if all(m in v for m in METRICS[k[0]])}


def report(summary: Dict[Tuple[str, str, str], Dict[str, Any]], args: argparse.Namespace,
           plot_name: str,
           earlier: Optional[Dict[Tuple[str, str, str], Dict[str, Any]]] = None) -> str:
    """The markdown section (between :data:`BEGIN` and :data:`END`) of :func:`summarise`'s
    ``summary`` for the run options ``args``, linking the plot ``plot_name``; ``earlier``
    (:func:`earlier_summary`) adds the rows this study did not run, marked as such."""
    earlier = {k: v for k, v in (earlier or {}).items() if k not in summary}
    rows = ['| task | backbone | init | metric | mean | spread (std) | seeds | train (s) | '
            'measured |', '|---|---|---|---|---|---|---|---|---|']
    for key, metrics in sorted({**earlier, **summary}.items()):
        task, model, init = key
        when = 'earlier study' if key in earlier else 'this study'
        for metric in METRICS[task]:
            mean, spread, n = metrics[metric]
            rows.append(f'| {TASK_NAMES[task]} | {model} | {init} | {metric} | '
                        f'{mean:.3f} | {spread:.3f} | {n} | {metrics["seconds"]:.0f} | {when} |')
    return '\n'.join([
        BEGIN, '',
        f'Measured by `{TOOL}` ({_setting(args)}; seeds {args.seeds}). mAP 0-1 as mmdet '
        'reports it, mIoU in % as mmseg does. Rows marked "earlier study" are kept from the '
        'report this one replaced (same schedule and scenes; runs this study did not repeat).',
        '', *rows, '', f'![transfer study]({plot_name})', '', END, ''])


def plot(summary: Dict[Tuple[str, str, str], Dict[str, Any]],
         out_file: Union[str, Path]) -> None:
    """Bar chart of the summary's scores (mean, spread as error bars) into ``out_file`` (PNG,
    written to a temporary file and renamed)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    metrics = [('det', 'coco/bbox_mAP', 1.), ('det', 'coco/segm_mAP', 1.), ('seg', 'mIoU', .01)]
    metrics = [m for m in metrics if any(k[0] == m[0] for k in summary)]
    keys = sorted({(k[1], k[2]) for k in summary})
    fig, ax = plt.subplots(figsize=(3.2 + 1.6 * len(metrics), 3.4))
    width = 0.8 / max(len(keys), 1)
    for i, (model, init) in enumerate(keys):
        means, errs, xs = [], [], []
        for j, (task, metric, scale) in enumerate(metrics):
            entry = summary.get((task, model, init), {}).get(metric)
            if entry:
                xs.append(j + (i - (len(keys) - 1) / 2) * width)
                means.append(entry[0] * scale)
                errs.append(entry[1] * scale)
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=f'{model} {init}',
               hatch='' if init == 'pretrained' else '//')
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([f'{m}' + (' (/100)' if s != 1. else '') for _, m, s in metrics])
    ax.set_ylabel('score (0-1)')
    ax.legend(fontsize=7)
    ax.set_title('Digit scenes: fine-tuned from the\nclassification checkpoint vs scratch',
                 fontsize=9)
    fig.tight_layout()
    tmp = Path(out_file).with_suffix('.tmp.png')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_file)


def write_section(out: Union[str, Path], section: str) -> None:
    """Replace the text between the study markers of ``out`` (append when absent)."""
    out = Path(out)
    text = out.read_text() if out.is_file() else '# Downstream transfer on digit scenes\n\n'
    if _section(text) is not None:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip('\n') + rest.split(END, 1)[1]
    else:
        text = text.rstrip('\n') + '\n\n' + section
    tmp = out.with_suffix('.tmp')
    tmp.write_text(text)
    os.replace(tmp, out)
