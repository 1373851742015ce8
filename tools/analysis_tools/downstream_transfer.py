"""Transfer study: does the classification checkpoint help detection and segmentation?

The usage, options and behaviour are documented in :mod:`mmdwnet.analysis.transfer_study`.
"""
import json
import os
import sys
import time
from pathlib import Path

from mmdwnet.analysis.transfer_study import (earlier_summary, parse_args, plot, report,
                                             summarise, swin_config, write_section)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'demo'))
import downstream  # noqa: E402


def cls_checkpoint(model, args):
    """The pretraining checkpoint of ``model`` (``digits_demo.PRETRAIN``: the digits classifier
    trained on digits repainted on photos, the configs' init_cfg; trained when missing)."""
    from digits import write_digits
    from digits_demo import PRETRAIN, config_epochs, train_and_test
    config = PRETRAIN[model]
    work_dir = Path(args.cls_work_dir) / config.stem
    checkpoint = work_dir / f'epoch_{config_epochs(config)}.pth'
    if not checkpoint.is_file():
        print(f'==== no {checkpoint}: training the {model} classifier first', flush=True)
        checkpoint, _ = train_and_test(model, config, work_dir, write_digits(args.digits_root),
                                       None)
    return Path(checkpoint)


def from_demo(task, model, seed, args, fingerprint):
    """The fine-tuning ``make demo`` already did, when it is exactly this run (the same
    resolved config, scenes and initialising checkpoint: the same ``fingerprint``, see
    ``downstream.run_fingerprint``): its ``results.json`` entry, marked ``reused``; else None."""
    results = Path(args.cls_work_dir) / 'results.json'
    if not results.is_file():
        return None
    for run in json.loads(results.read_text()).get('downstream', []):
        if (run.get('task'), run.get('model'), run.get('fingerprint')) == \
                (task, model, fingerprint):
            return dict(run, seed=seed, reused=str(results))
    return None


def kept_run(result_file, fingerprint, tag):
    """The result a previous study kept in ``result_file`` when it is this run, else None (a
    result made with another config, other scenes or another checkpoint is trained again)."""
    if not result_file.is_file():
        return None
    run = json.loads(result_file.read_text())
    if run.get('fingerprint') == fingerprint:
        return run
    downstream.say(tag, f'\n==== {result_file} was made with another config, other scenes or '
                   'another classification checkpoint: training this run again')
    return None


def run_one(task, model, init, seed, args, scenes, checkpoints, tag=None):
    out = Path(args.work_dir) / f'{task}_{model}_{init}_seed{seed}'
    result_file = out / 'result.json'
    if model == 'Swin':
        config = swin_config(task, args.work_dir, downstream.CONFIGS[task]['DWNet'])
        checkpoint = None
    else:
        config = downstream.CONFIGS[task][model]
        checkpoint = checkpoints[model] if init == 'pretrained' else None
    fingerprint = downstream.run_fingerprint(
        config, downstream.run_options(task, scenes, checkpoint, args.short, seed), scenes,
        checkpoint)
    run = kept_run(result_file, fingerprint, tag)
    if run is not None:
        return run
    run = None if model == 'Swin' else from_demo(task, model, seed, args, fingerprint)
    if run is not None:
        downstream.say(tag, f'\n==== {task} {model} {init} seed {seed}: the run of make demo '
                       f'({run["reused"]})')
    else:
        downstream.say(tag, f'\n==== {task} {model} {init} seed {seed}')
        run = downstream.fine_tune(task, config, out, scenes, checkpoint, short=args.short,
                                   seed=seed, tag=tag)
    run.update(task=task, model=model, init=init, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    tmp = result_file.with_suffix('.tmp')
    tmp.write_text(json.dumps(run, indent=2))
    os.replace(tmp, result_file)
    return run


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    from digit_scenes import write_scenes
    start = time.time()
    scenes = write_scenes(args.scenes_root,
                          **(downstream.SHORT_SCENES if args.short else {}))
    # a model's detection and segmentation side by side, model after model in --models order
    # (an interrupted study has whole pairs); the toolbox Swin has no digits checkpoint
    todo = [(task, model, init, seed) for seed in args.seeds for model in args.models
            for init in args.inits for task in args.tasks
            if not (model == 'Swin' and init == 'pretrained')]
    # the classification checkpoints first, one at a time (runs side by side share them)
    checkpoints = {model: cls_checkpoint(model, args)
                   for model in sorted({m for _, m, i, _ in todo if i == 'pretrained'})}
    jobs = args.jobs or downstream.default_jobs(len(todo))
    runs = downstream.in_parallel(
        [lambda run=run: run_one(*run, args, scenes, checkpoints,
                                 tag='{} {} {} s{}'.format(*run) if jobs > 1 else None)
         for run in todo], jobs)
    summary = summarise(runs)
    earlier = earlier_summary(args.out, args)  # report() and the merge below prefer summary
    plot_file = Path(args.out).with_suffix('.png')
    plot({**earlier, **summary}, plot_file)
    write_section(args.out, report(summary, args, plot_file.name, earlier))
    print(f'wrote {args.out} and {plot_file} ({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
