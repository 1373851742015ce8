"""Evaluate a checkpoint on a config's test set (classification, detection, segmentation).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher ...]

Metrics are printed by the toolbox's evaluator (top-1, COCO bbox/segm mAP, mIoU table).
CHECKPOINT is a local path or a URL, in mmdwnet's layout or an official DemystifyLocalViT /
Swin file (converted on load).  It must fit the model entirely: a checkpoint of another
architecture, or one that leaves any tensor of the model unloaded, stops the run before
evaluation (mmdwnet.converters.loading.CheckpointMismatch, or mmengine's strict-load error).
Every tensor must be a tensor of the model's shape and kind of dtype, a zip checkpoint must pass
its CRC check, and a model whose weights hold NaN/inf is not evaluated (NonFiniteWeights, naming
the first such parameter); nor are outputs holding NaN/inf reported as scores.  Every checkpoint
read of the run is weights-only (mmdwnet.utils.safe_loading; see docs/security.md).

The command line of ``tools/test.py`` (a thin wrapper around :func:`main`, which ``mim test
mmdwnet CONFIG`` runs as a script); what it shares with ``tools/train.py`` is
:mod:`mmdwnet.utils.cli`.
"""
import argparse
from typing import Any, List, Optional

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import Runner

import mmdwnet  # noqa: F401
from mmdwnet.converters.loading import NonFiniteWeights, check_finite_weights, strict_loading
from mmdwnet.utils.cli import (add_runner_args, build_runner, is_url, load_config,
                               parse_with_local_rank)
from mmdwnet.utils.torch_load import safe_loading


__all__ = ['parse_args', 'enable_visualization', 'load_strictly_and_check',
           'refuse_non_finite_outputs', 'main']

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file or URL (mmdwnet or official)')
    parser.add_argument('--out', help='dump raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save visualised predictions into this dir '
                        '(relative to the work dir timestamp folder)')
    add_runner_args(parser, 'the dir to save logs and metrics')
    return parse_with_local_rank(parser, argv)


def enable_visualization(cfg: Config, show_dir: str) -> Config:
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


def load_strictly_and_check(runner: Runner, checkpoint: str) -> None:
    """Make ``runner.load_checkpoint`` strict and refuse non-finite weights after it."""
    load = runner.load_checkpoint

    def load_checkpoint(filename, *args, **kwargs):
        kwargs['strict'] = True
        result = load(filename, *args, **kwargs)
        check_finite_weights(runner.model, f'checkpoint {checkpoint}')
        return result

    runner.load_checkpoint = load_checkpoint


def _non_finite(outputs: Any) -> bool:
    if isinstance(outputs, torch.Tensor):
        return outputs.is_floating_point() and not bool(torch.isfinite(outputs).all())
    if isinstance(outputs, (list, tuple)):
        return any(_non_finite(o) for o in outputs)
    if isinstance(outputs, dict):
        return any(_non_finite(o) for o in outputs.values())
    return False


def refuse_non_finite_outputs(model: nn.Module) -> None:
    """A forward hook on every direct child of ``model`` (backbone, neck, heads): outputs with
    NaN/inf stop the evaluation instead of being scored."""

    def hook(module, args, outputs, name):
        if _non_finite(outputs):
            raise NonFiniteWeights(f'the {name} of the model produced NaN/inf outputs; refusing '
                                   'to score them (non-finite activations: check the weights, '
                                   'the input normalisation and the precision)')

    for name, child in model.named_children():
        if name != 'data_preprocessor':
            child.register_forward_hook(lambda m, a, o, name=name: hook(m, a, o, name))


def main(argv: Optional[List[str]] = None) -> dict:
    """Evaluate as ``tools/test.py`` does with ``argv`` (default: ``sys.argv[1:]``); returns
    the metrics (``runner.test()``)."""
    args = parse_args(argv)
    required = () if is_url(args.checkpoint) else (('checkpoint', args.checkpoint), )
    cfg = load_config(args, *required)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    with safe_loading():
        runner = build_runner(cfg)
        # never evaluate a model whose checkpoint did not load: every tensor must come from it
        load_strictly_and_check(runner, args.checkpoint)
        refuse_non_finite_outputs(runner.model)
        if args.out:
            from mmengine.evaluator import DumpResults
            runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
        with strict_loading():
            return runner.test()

