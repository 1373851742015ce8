"""Evaluate a checkpoint on a config's test set (classification, detection, segmentation).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]

Metrics are printed by the toolbox's evaluator (top-1, COCO bbox/segm mAP, mIoU table).
CHECKPOINT is a local path or a URL, in mmdwnet's layout or an official DemystifyLocalViT /
Swin file (converted on load).  It must fit the model entirely: a checkpoint of another
architecture, or one that leaves any tensor of the model unloaded, stops the run before
evaluation (mmdwnet.converters.loading.CheckpointMismatch, or mmengine's strict-load error).
"""
import argparse
import functools

import mmdwnet  # noqa: F401
from mmdwnet.converters.loading import strict_loading
from mmdwnet.utils.cli import (add_runner_args, build_runner, is_url, load_config,
                               parse_with_local_rank)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL (mmdwnet or official)')
    parser.add_argument('--out', help='dump raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save visualised predictions into this dir '
                        '(relative to the work dir timestamp folder)')
    add_runner_args(parser, 'the dir to save logs and metrics')
    return parse_with_local_rank(parser, argv)


def enable_visualization(cfg, show_dir):
    """Turn on the toolbox's visualization hook and write images into ``show_dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise KeyError('the config has no default_hooks.visualization to draw predictions with')
    hook_type = hook.get('type', '')
    if hook_type == 'VisualizationHook':  # mmpretrain
        hook.update(enable=True, out_dir=show_dir)
    else:  # mmdet DetVisualizationHook, mmseg SegVisualizationHook
        hook.update(draw=True)
        hook['test_out_dir' if 'Det' in hook_type else 'show_dir'] = show_dir
        if 'Seg' in hook_type:
            hook['interval'] = 1
    return cfg


def main(argv=None):
    args = parse_args(argv)
    required = () if is_url(args.checkpoint) else (('checkpoint', args.checkpoint), )
    cfg = load_config(args, *required)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    runner = build_runner(cfg)
    # never evaluate a model whose checkpoint did not load: every tensor must come from it
    runner.load_checkpoint = functools.partial(runner.load_checkpoint, strict=True)
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    with strict_loading():
        return runner.test()


if __name__ == '__main__':
    main()
