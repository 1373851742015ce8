"""``make demo``: one backbone, three tasks -- classification, detection, segmentation on digits.

    python demo/digits_demo.py [--epochs N] [--data-root data/digits] [--work-dir work_dirs/demo]
                               [--scenes-root data/digit_scenes] [--tasks cls det seg] [--short]

1. writes scikit-learn's digits once as an image folder (``demo/digits.py``; no download);
2. trains each model with ``tools/train.py`` on its config in ``configs/classification/digits/``
   (configs that inherit the ImageNet ones; mmengine prints its progress);
3. evaluates the last checkpoint with ``tools/test.py`` (top-1 on the 360 validation images);
4. predicts one validation image per digit with mmpretrain's ``ImageClassificationInferencer``;
5. writes to the work dir ``predictions.png`` (the images with true and predicted labels, one row
   per model) and ``results.md`` / ``results.json`` (top-1 from ``tools/test.py``, parameters,
   FLOPs at 32x32, inference throughput measured here);
6. (``det``, ``seg``) writes the digit scenes once (``demo/digit_scenes.py``: the digits on
   scikit-image's photos, COCO and ADE20K formats), fine-tunes the nano DWNet's Cascade Mask
   R-CNN and UPerNet (``configs/{detection,segmentation}/digits/``) from the classification
   checkpoint of their pretraining config (``PRETRAIN``: the classifier trained on digits
   repainted on photos, trained in step 2 beside the others), evaluates them with
   ``tools/test.py`` (``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``), draws predictions on
   validation scenes (``downstream.png``) and adds them to ``results.md`` / ``results.json``.
   ``tools/analysis_tools/downstream_transfer.py`` (``make study``) runs the I-D-DWNet,
   from-scratch and Swin comparisons.

Classification takes about two minutes on a 2-core CPU with the configs' 10 epochs (30 for the
pretraining; ``--epochs`` shortens them all); see README.md for the whole demo's measured time.
``--short`` shortens detection and segmentation (a small scene set, a few dozen / hundred
iterations: for tests).
Every step runs with one CPU thread unless ``OMP_NUM_THREADS`` is set: these nano models gain
little from more, and one thread avoids OpenMP's spin-waiting when other processes share the
CPU (measured here: 8x faster per iteration on a busy 2-core machine).  So the trainings go side
by side, one per core (``--jobs``; the two classifiers, then detection and segmentation), each
line of their output behind its tag; the throughput of step 4 is measured with nothing else
running.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('OMP_NUM_THREADS', '1')  # before torch is imported; see the docstring
sys.path.insert(0, str(ROOT / 'demo'))
from digit_scenes import write_scenes  # noqa: E402
from digits import CLASSES, SIZE, write_digits  # noqa: E402
import downstream  # noqa: E402
from downstream import in_parallel, run_tool, say  # noqa: E402

CONFIG_DIR = ROOT / 'configs' / 'classification' / 'digits'
TASKS = ('cls', 'det', 'seg')
DOWNSTREAM_MODEL = 'DWNet'  # the demo fine-tunes this one; make study runs the others
MODELS = {  # name shown -> config
    'DWNet': CONFIG_DIR / 'dwnet-nano_1xb64-10e_digits-32px.py',
    'I-D-DWNet': CONFIG_DIR / 'i-dynamic-dwnet-nano_1xb64-10e_digits-32px.py',
}
# The detection and segmentation configs' pretraining (their backbone init_cfg): the same
# classifiers trained on digits repainted on photos (the scenes' look), 30 epochs.
PRETRAIN = {
    'DWNet': CONFIG_DIR / 'dwnet-nano_1xb64-30e_digits-on-photos-32px.py',
    'I-D-DWNet': CONFIG_DIR / 'i-dynamic-dwnet-nano_1xb64-30e_digits-on-photos-32px.py',
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='mmdwnet demo on handwritten digits')
    parser.add_argument('--epochs', type=int, default=None,
                        help='training epochs (default: the configs\' 10); at least 2')
    parser.add_argument('--data-root', default='data/digits', help='digits image folder')
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where results go')
    parser.add_argument('--scenes-root', default=None,
                        help='digit scenes folder (default: data/digit_scenes, or '
                        'data/digit_scenes-short with --short)')
    parser.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS),
                        help='what to run (det and seg need cls: they start from its checkpoint)')
    parser.add_argument('--short', action='store_true',
                        help='shortened detection / segmentation (small scene set, few '
                        'iterations), for tests')
    parser.add_argument('--jobs', type=int, default=None,
                        help='trainings side by side (the two classifiers, then detection and '
                        'segmentation), each a process with OMP_NUM_THREADS threads (default: '
                        'as many as the CPUs hold at that many threads each; 1: one at a time)')
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f'--jobs {args.jobs}: at least 1')
    if 'cls' not in args.tasks:
        parser.error('--tasks: det and seg fine-tune the checkpoint of cls; include cls')
    if args.scenes_root is None:
        args.scenes_root = 'data/digit_scenes' + ('-short' if args.short else '')
    if args.epochs is not None and args.epochs < 2:
        parser.error(f'--epochs {args.epochs}: use at least 2 (1 warm-up epoch, then cosine)')
    return args


def data_options(data_root):
    return [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def config_epochs(config):
    """The training epochs of a classification ``config`` (its ``train_cfg.max_epochs``)."""
    from mmengine.config import Config
    return Config.fromfile(str(config)).train_cfg.max_epochs


def train_and_test(name, config, work_dir, data_root, epochs, tag=None):
    """tools/train.py then tools/test.py; returns (checkpoint, top-1 reported by tools/test.py)."""
    options = data_options(data_root)
    if epochs is not None:
        options += [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
                    f'default_hooks.checkpoint.interval={epochs}']
    epochs = epochs or config_epochs(config)
    say(tag, f'\n==== {name}: training {epochs} epochs ({config.relative_to(ROOT)})')
    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options', *options, tag=tag)
    checkpoint = work_dir / f'epoch_{epochs}.pth'
    say(tag, f'\n==== {name}: testing {checkpoint}')
    metrics = downstream.test_metrics(config, checkpoint, work_dir / 'test',
                                      data_options(data_root), tag=tag)
    return checkpoint, float(metrics['accuracy/top1'])


def pick_images(data_root):
    """The first validation image of each digit: [(path, true label)]."""
    picks = []
    for label, cls in enumerate(CLASSES):
        picks.append((str(sorted((Path(data_root) / 'val' / cls).glob('*.png'))[0]), label))
    return picks


def measure(config, checkpoint, images):
    """Predictions on ``images`` with mmpretrain's inferencer; params, FLOPs, throughput."""
    import torch
    from mmpretrain import ImageClassificationInferencer

    import mmdwnet  # noqa: F401  (registers the backbones)
    from mmdwnet.analysis import count_flops, count_params
    from mmdwnet.utils import safe_loading
    with safe_loading():  # weights-only read of the runner checkpoint (mmengine types allowed)
        inferencer = ImageClassificationInferencer(str(config), pretrained=str(checkpoint),
                                                   device='cpu')
    preds = inferencer([path for path, _ in images], batch_size=len(images))
    model = inferencer.model.eval()
    batch = torch.randn(64, 3, SIZE, SIZE)
    with torch.no_grad():
        model(batch, mode='tensor')  # warm-up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model(batch, mode='tensor')
            times.append(time.perf_counter() - start)
    return dict(
        predictions=[int(p['pred_label']) for p in preds],
        scores=[float(p['pred_score']) for p in preds],
        params=count_params(model),
        flops=int(count_flops(model, (3, SIZE, SIZE))),
        images_per_s=64 / sorted(times)[len(times) // 2])


def draw(results, images, out_file):
    """One row per model, one column per image; titles: prediction (green right, red wrong)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from PIL import Image

    pixels = [Image.open(path).convert('L') for path, _ in images]
    fig, axes = plt.subplots(len(results), len(images), figsize=(1.2 * len(images),
                                                                 1.55 * len(results) + 0.4),
                             squeeze=False)
    for row, (name, res) in enumerate(results.items()):
        for col, (img, (_, label)) in enumerate(zip(pixels, images)):
            ax = axes[row][col]
            ax.imshow(img, cmap='gray_r')
            ax.set_xticks([])
            ax.set_yticks([])
            pred = res['predictions'][col]
            ax.set_title(f'pred {CLASSES[pred]}', fontsize=9,
                         color='tab:green' if pred == label else 'tab:red')
            ax.set_xlabel(f'true {CLASSES[label]}', fontsize=8)
            if col == 0:
                ax.set_ylabel(f'{name}\n{res["top1"]:.1f}%', fontsize=9)
    fig.suptitle('mmdwnet demo: handwritten digits (validation images), top-1 from tools/test.py',
                 fontsize=10)
    fig.tight_layout()
    tmp = Path(out_file).with_suffix('.tmp.png')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_file)


def table(results, threads):
    rows = ['| model | top-1 (%) | params | FLOPs (32x32) | throughput (img/s) |',
            '|---|---|---|---|---|']
    for name, res in results.items():
        rows.append(f'| {name} | {res["top1"]:.2f} | {res["params"] / 1e6:.2f} M | '
                    f'{res["flops"] / 1e6:.1f} M | {res["images_per_s"]:.0f} |')
    rows.append('')
    rows.append(f'top-1: tools/test.py on the 360 validation images (chance: 10%). FLOPs: '
                'multiply-accumulates. Throughput: forward pass, batch 64, CPU, '
                f'torch threads: {threads}, this machine.')
    return '\n'.join(rows) + '\n'


def write_atomic(path, text):
    tmp = Path(str(path) + '.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def downstream_table(runs):
    """The detection / segmentation rows: task, model, init, the toolboxes' metrics."""
    rows = ['| task | model | backbone init | coco/bbox_mAP | coco/segm_mAP | mIoU (%) | '
            'train (s) |', '|---|---|---|---|---|---|---|']
    for run in runs:
        m = run['metrics']

        def cell(key, fmt):
            return format(m[key], fmt) if key in m else '-'
        init = 'classification ckpt' if run['init'] else 'scratch'
        rows.append(f'| {downstream.TASK_NAMES[run["task"]]} | {run["model"]} | {init} | '
                    f'{cell("coco/bbox_mAP", ".3f")} | {cell("coco/segm_mAP", ".3f")} | '
                    f'{cell("mIoU", ".2f")} | {run["train_seconds"]:.0f} |')
    rows.append('')
    rows.append('Detection and segmentation: tools/test.py on the validation scenes '
                '(digits never seen in classification training); mAP as mmdet reports it '
                '(0-1), mIoU as mmseg does (%).')
    return '\n'.join(rows) + '\n'


def run_downstream(args, init, work_dir):
    """Fine-tune DWNet's detector and segmentor from its pretraining checkpoint ``init``."""
    scenes = write_scenes(args.scenes_root, **(downstream.SHORT_SCENES if args.short else {}))
    tasks = [task for task in ('det', 'seg') if task in args.tasks]
    configs = {task: downstream.CONFIGS[task][DOWNSTREAM_MODEL] for task in tasks}
    jobs = args.jobs or downstream.default_jobs(len(tasks))

    def fine_tune(task):
        config, tag = configs[task], task if jobs > 1 else None
        say(tag, f'\n==== {DOWNSTREAM_MODEL}: {downstream.TASK_NAMES[task]} on the digit '
            f'scenes, from {init} ({config.relative_to(ROOT)})')
        run = downstream.fine_tune(task, config, work_dir / config.stem, scenes, init,
                                   short=args.short, tag=tag)
        run.update(task=task, model=DOWNSTREAM_MODEL)
        return run

    runs = in_parallel([lambda task=task: fine_tune(task) for task in tasks], jobs)
    rows = []
    for task, run in zip(tasks, runs):
        drawings = downstream.draw_predictions(task, configs[task], run['checkpoint'],
                                               downstream.val_images(scenes),
                                               work_dir / configs[task].stem / 'vis')
        metric = ', '.join(f'{k} {run["metrics"][k]:.3g}' for k in downstream.METRICS[task])
        rows.append((f'{downstream.TASK_NAMES[task]}\n{DOWNSTREAM_MODEL}\n{metric}', drawings))
    if rows:
        downstream.save_figure(
            rows, work_dir / 'downstream.png',
            'mmdwnet demo: validation scenes, fine-tuned from the digits classification '
            'checkpoint')
    return runs


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    data_root = write_digits(args.data_root)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    images = pick_images(data_root)
    # the downstream model's pretraining when det / seg follow (first: the longest, so that
    # the shown classifiers train beside it), then the shown classifiers
    classifiers = [(f'{DOWNSTREAM_MODEL} pretraining', PRETRAIN[DOWNSTREAM_MODEL])] \
        if {'det', 'seg'} & set(args.tasks) else []
    pretrains = len(classifiers)
    classifiers += list(MODELS.items())
    jobs = args.jobs or downstream.default_jobs(len(classifiers))
    trained = in_parallel(
        [lambda name=name, config=config: train_and_test(
            name, config, work_dir / config.stem, data_root, args.epochs,
            tag=name if jobs > 1 else None) for name, config in classifiers], jobs)
    pretraining = {DOWNSTREAM_MODEL: dict(config=str(classifiers[0][1].relative_to(ROOT)),
                                          checkpoint=str(trained[0][0]), top1=trained[0][1])
                   } if pretrains else {}
    trained = trained[pretrains:]
    results = {}
    for (name, config), (checkpoint, top1) in zip(MODELS.items(), trained):
        # throughput measured once the trainings are done: nothing else shares the CPU
        results[name] = dict(config=str(config.relative_to(ROOT)), checkpoint=str(checkpoint),
                             top1=top1, **measure(config, checkpoint, images))
    import torch
    text = table(results, torch.get_num_threads())
    draw(results, images, work_dir / 'predictions.png')
    cls_seconds = time.time() - start
    runs = run_downstream(args, pretraining[DOWNSTREAM_MODEL]['checkpoint'],
                          work_dir) if pretraining else []
    if runs:
        pre = pretraining[DOWNSTREAM_MODEL]
        text = '## Classification (digits, 32x32)\n\n' + text + \
            '\n## Detection and segmentation (digit scenes)\n\n' + \
            f'Backbone pretraining: `{pre["config"]}` (digits repainted on photos), top-1 ' \
            f'{pre["top1"]:.2f} on the validation digits.\n\n' + downstream_table(runs)
    seconds = round(time.time() - start, 1)
    text += f'\nWhole demo: {seconds:.0f} s wall-clock (classification {cls_seconds:.0f} s).\n'
    write_atomic(work_dir / 'results.md', text)
    write_atomic(work_dir / 'results.json', json.dumps(
        dict(models=results, pretraining=pretraining,
             images=[dict(path=p, label=label) for p, label in images],
             epochs=args.epochs, downstream=runs, short=args.short,
             scenes_root=str(args.scenes_root), seconds=seconds,
             classification_seconds=round(cls_seconds, 1)), indent=2))
    print('\n' + text)
    print(f'wrote {work_dir / "predictions.png"}, ' +
          (f'{work_dir / "downstream.png"}, ' if runs else '') +
          f'{work_dir / "results.md"} and {work_dir / "results.json"} '
          f'({time.time() - start:.0f} s)')


if __name__ == '__main__':
    main()
