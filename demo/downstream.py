"""Fine-tune detection and segmentation on the digit scenes from a classification checkpoint.

What ``demo/digits_demo.py`` (``make demo``) and ``tools/analysis_tools/downstream_transfer.py``
(``make study``) share: one run is ``tools/train.py`` on a digit-scenes config (Cascade Mask R-CNN
in ``configs/detection/digits/``, UPerNet in ``configs/segmentation/digits/``) with the data root,
the backbone's initialisation (a classification checkpoint, or none: from scratch) and optionally
a shortened schedule given as ``--cfg-options``, then ``tools/test.py`` on the last checkpoint,
whose metrics (the toolboxes' own names: ``coco/bbox_mAP``, ``coco/segm_mAP``, ``mIoU``) are
returned.  Pictures of the predictions use ``demo/det_demo.py`` and ``demo/seg_demo.py``.

Runs may go side by side (:func:`in_parallel`, ``--jobs``): each is its own process with
``OMP_NUM_THREADS`` threads (one by default), so two runs on a 2-core CPU use both cores without
OpenMP oversubscription; the output of each is printed line by line behind its tag.
"""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from mmdwnet.analysis.transfer_study import METRICS, TASK_NAMES  # noqa: F401 (re-exported)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digit_scenes import STAMP  # noqa: E402  (the scenes' options, written with them)

ROOT = Path(__file__).resolve().parents[1]
DET_DIR = ROOT / 'configs' / 'detection' / 'digits'
SEG_DIR = ROOT / 'configs' / 'segmentation' / 'digits'
CONFIGS = {
    'det': {
        'DWNet': DET_DIR / 'cascade-mask-rcnn_dwnet-nano_fpn_1xb4-digit-scenes.py',
        'I-D-DWNet': DET_DIR / 'cascade-mask-rcnn_i-dynamic-dwnet-nano_fpn_1xb4-digit-scenes.py'
    },
    'seg': {'DWNet': SEG_DIR / 'upernet_dwnet-nano_1xb8-digit-scenes.py',
            'I-D-DWNet': SEG_DIR / 'upernet_i-dynamic-dwnet-nano_1xb8-digit-scenes.py'},
}
# The shortened mode (tests, `--short`): a small scene set and a few hundred training images
# seen; enough to learn well above an untrained model, not to reach the full runs' numbers.
# 256 training scenes, not 64: 1000 segmentation steps of 8 crops overfit 64 (mIoU 10.27 from the
# tests' classification checkpoint; 10.06 after 1300 steps; other loss weights and lrs 9.9-11.9)
# and reach 23.0 on 256 (2026-12-06; detection: see its schedule).  Writing them takes seconds.
SHORT_SCENES = dict(seed=1, train_scenes=256, val_scenes=24, max_size=128)
# No validation inside a demo or study training: tools/test.py evaluates the result once
# (validating at the end of training as well cost the detector 80 s of the demo's critical path).
NO_VAL = ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
SHORT_SCHEDULE = {
    # detection learns slowly at first: 240 steps reach bbox mAP_50 0.09, 320 reach 0.27; 32
    # sampled RoIs a cascade stage (64 in the config) make a step 0.67x as long (0.50 against
    # 0.75 s alone on one thread) and reach bbox / segm mAP_50 0.251 / 0.251 (64: 0.265 / 0.279)
    # on 64 training scenes, 0.192 / 0.171 on the 256 of now
    'det': [
        'train_cfg.max_iters=320', 'train_cfg.val_interval=320',
        'default_hooks.checkpoint.interval=320', 'optim_wrapper.optimizer.lr=4e-3',
        'param_scheduler.0.end=10', 'param_scheduler.1.end=320',
        'param_scheduler.1.milestones=[280]',
        'model.train_cfg.rcnn.0.sampler.num=32', 'model.train_cfg.rcnn.1.sampler.num=32',
        'model.train_cfg.rcnn.2.sampler.num=32',
        'default_hooks.logger.interval=32'],
    # segmentation steps are cheap: 1000 of them end about when detection's 320 do
    'seg': [
        'train_cfg.max_iters=1000', 'train_cfg.val_interval=1000',
        'default_hooks.checkpoint.interval=1000',
        'param_scheduler.0.end=20', 'param_scheduler.1.begin=20',
        'param_scheduler.1.end=1000', 'default_hooks.logger.interval=100'],
}


_PRINT_LOCK = threading.Lock()
# Config.fromfile is not thread-safe: a `mmdet::` base makes mmengine ask pkg_resources whether
# mmdet is installed, and two threads asking at once fail with a TypeError (seen when make study
# fingerprinted its detection and segmentation runs side by side).
_CONFIG_LOCK = threading.Lock()
_RUNNING = set()  # the tool processes started by run_tool and not finished yet


def say(tag, line):
    """Print ``line`` (behind ``[tag]`` when given), one whole line at a time across threads."""
    with _PRINT_LOCK:
        print(f'[{tag}] {line}' if tag else line, flush=True)


def run_tool(script, *args, tag=None):
    """Run ``tools/<script>`` in a fresh process, its output going to our terminal (each line
    behind ``[tag]`` when a tag is given, so that runs side by side stay readable)."""
    cmd = [sys.executable, str(ROOT / 'tools' / script), *map(str, args)]
    say(tag, '\n$ ' + ' '.join(cmd))
    pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) \
        if tag else {}
    with subprocess.Popen(cmd, cwd=ROOT, **pipe) as proc:
        _RUNNING.add(proc)
        try:
            for line in (proc.stdout if tag else ()):
                say(tag, line.rstrip('\n'))
            proc.wait()
        finally:
            _RUNNING.discard(proc)
    if proc.returncode != 0:
        where = f'the lines marked [{tag}]' if tag else 'its output'
        sys.exit(f'error: {script} failed (exit code {proc.returncode}); see {where} above')


def default_jobs(runs):
    """How many of ``runs`` runs to train side by side: one per ``OMP_NUM_THREADS`` threads
    (default 1) the CPUs hold, at most ``runs``."""
    threads = max(1, int(os.environ.get('OMP_NUM_THREADS') or 1))
    return max(1, min(runs, (os.cpu_count() or 1) // threads))


def in_parallel(calls, jobs):
    """Call the zero-argument ``calls``, ``jobs`` at a time; returns their results in order.

    The first failure (an exception, or ``sys.exit`` from :func:`run_tool`) stops the others:
    calls not started are cancelled and the tool processes still running are terminated.
    """
    if jobs <= 1:
        return [call() for call in calls]
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = [pool.submit(call) for call in calls]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            raise failed[0].exception()
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        for proc in list(_RUNNING):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def data_options(task, scenes_root):
    """``--cfg-options`` pointing the three loaders of ``task`` at ``scenes_root`` (the folder
    ``demo/digit_scenes.py`` writes: ``coco/`` for detection, ``ade/`` for segmentation)."""
    root = Path(scenes_root).resolve() / ('coco' if task == 'det' else 'ade')
    root = f'{root}/' if task == 'det' else str(root)  # mmdet joins by string concatenation
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def init_options(checkpoint):
    """The backbone's initialisation: a classification checkpoint, or ``None`` (from scratch:
    the backbone's own random initialisation)."""
    if checkpoint is None:
        return ['model.backbone.init_cfg=None']
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f'classification checkpoint {checkpoint} does not exist: the backbone would start '
            'from random weights. Train it first (make demo, or tools/train.py on '
            'configs/classification/digits/), or pass the path of one.')
    return [f'model.backbone.init_cfg.checkpoint={Path(checkpoint).resolve()}']


def last_checkpoint(work_dir):
    """The checkpoint ``tools/train.py`` saved last in ``work_dir``."""
    marker = Path(work_dir) / 'last_checkpoint'
    if not marker.is_file():
        sys.exit(f'error: tools/train.py left no checkpoint in {work_dir}')
    return Path(marker.read_text().strip())


def test_metrics(config, checkpoint, test_dir, extra_options=(), tag=None):
    """``tools/test.py``; returns the metrics it wrote (its json file) as a dict."""
    test_dir = Path(test_dir)
    before = set(test_dir.glob('*/*.json'))
    run_tool('test.py', config, checkpoint, '--work-dir', test_dir, '--cfg-options',
             *extra_options, tag=tag)
    logs = sorted(set(test_dir.glob('*/*.json')) - before)
    if not logs:
        sys.exit(f'error: tools/test.py wrote no metrics file under {test_dir}')
    return json.loads(logs[-1].read_text())


def fine_tune(task, config, work_dir, scenes_root, checkpoint, short=False, seed=None,
              tag=None):
    """Train ``config`` on the scenes from ``checkpoint`` (None: from scratch), then test it
    (``tag``: see :func:`run_tool`).

    Returns:
        dict: ``config``, ``init`` (the checkpoint or None), ``checkpoint`` (the fine-tuned one),
        ``metrics`` (every number tools/test.py reported), ``train_seconds``.
    """
    work_dir = Path(work_dir)
    options = run_options(task, scenes_root, checkpoint, short, seed)
    start = time.time()
    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options', *options, tag=tag)
    seconds = time.time() - start
    trained = last_checkpoint(work_dir)
    metrics = test_metrics(config, trained, work_dir / 'test', data_options(task, scenes_root),
                           tag=tag)
    missing = [m for m in METRICS[task] if m not in metrics]
    if missing:
        sys.exit(f'error: tools/test.py reported no {missing} for {config}: {sorted(metrics)}')
    return dict(config=repo_path(config),
                init=None if checkpoint is None else str(checkpoint),
                checkpoint=str(trained), metrics=metrics, train_seconds=round(seconds, 1),
                fingerprint=run_fingerprint(config, options, scenes_root, checkpoint))


def repo_path(path):
    """``path`` as a run's record names it: relative to the repository when inside it (the
    configs, a study's work_dir under it), else absolute (a ``--work-dir`` elsewhere).  A
    relative ``path`` is taken from the current directory, as the tools took it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def run_options(task, scenes_root, checkpoint, short=False, seed=None):
    """The ``--cfg-options`` of one fine-tuning run (see :func:`fine_tune`)."""
    options = data_options(task, scenes_root) + init_options(checkpoint) + NO_VAL
    if short:
        options += SHORT_SCHEDULE[task]
    if seed is not None:
        options.append(f'randomness.seed={seed}')
    return options


def run_fingerprint(config, options, scenes_root, checkpoint):
    """What makes two fine-tuning runs the same run, as a sha256 hex digest: the config as
    resolved with its ``--cfg-options``, the options the scenes were written with and the bytes
    of the initialising checkpoint (None: from scratch).  A kept result is reused only under the
    same fingerprint, so an edited config, other scenes or a retrained classifier train again."""
    from mmengine.config import Config, DictAction
    with _CONFIG_LOCK:
        cfg = Config.fromfile(str(config))
    cfg.merge_from_dict({key: DictAction._parse_iterable(value)
                         for key, value in (opt.split('=', 1) for opt in options)})
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    stamp = Path(scenes_root) / STAMP
    digest.update(stamp.read_bytes() if stamp.is_file() else b'no scenes stamp')
    if checkpoint is not None:
        digest.update(hashlib.sha256(Path(checkpoint).read_bytes()).digest())
    return digest.hexdigest()


def val_images(scenes_root, n=4):
    """The first ``n`` validation scenes (paths)."""
    return sorted((Path(scenes_root) / 'coco' / 'val').glob('*.jpg'))[:n]


def draw_predictions(task, config, checkpoint, images, out_dir):
    """Predictions on ``images``: boxes, masks and labels (det) or a class overlay (seg), each
    written to ``out_dir``; returns the drawings (RGB arrays)."""
    sys.path.insert(0, str(ROOT / 'demo'))
    if task == 'det':
        from det_demo import detect_image
        return [detect_image(str(img), config, checkpoint, Path(out_dir) / img.name,
                             score_thr=0.5)[0] for img in images]
    from seg_demo import segment_image
    return [segment_image(str(img), config, checkpoint,
                          Path(out_dir) / img.with_suffix('.png').name)[0] for img in images]


def save_figure(rows, out_file, title):
    """``rows``: [(label, [RGB arrays])] -> one figure, a row per entry (written atomically)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols, 2.4 * len(rows) + 0.4),
                             squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = Path(out_file).with_suffix('.tmp.png')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_file)
