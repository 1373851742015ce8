"""Train a model from a config with mmengine's Runner (classification, detection, segmentation).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The config's ``default_scope`` (mmpretrain / mmdet / mmseg) selects the toolbox.

The command line of ``tools/train.py`` (a thin wrapper around :func:`main`, which ``mim train
mmdwnet CONFIG`` runs as a script); what it shares with ``tools/test.py`` is
:mod:`mmdwnet.utils.cli`.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config

import mmdwnet  # noqa: F401  (registers the modules)
from mmdwnet.utils.cli import (add_runner_args, build_runner, load_config,
                               parse_with_local_rank)
from mmdwnet.utils.torch_load import safe_loading, safe_torch_load


__all__ = ['parse_args', 'check_resumable', 'merge_args', 'check_amp_device', 'main']

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest checkpoint '
                        'in the work dir when no path is given')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--no-validate', action='store_true', help='skip validation in training')
    add_runner_args(parser, 'the dir to save logs and models')
    return parse_with_local_rank(parser, argv)


def check_resumable(path: str) -> None:
    """--resume needs a runner checkpoint (weights and the epoch/iter reached); weights alone --
    an official release, a converted file -- start a run through ``load_from`` instead."""
    ckpt = safe_torch_load(path, map_location='cpu')  # weights_only=True, CRC-checked
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'epoch' not in meta or 'iter' not in meta:
        raise ValueError(f'--resume {path}: not a training checkpoint (no epoch/iter to resume '
                         'from; e.g. an official or converted weights file). Start from its '
                         f'weights instead: --cfg-options load_from={path}')


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the training-only options to ``cfg``."""
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    check_amp_device(cfg, args.config)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise KeyError(f'{args.config} has no auto_scale_lr (base_batch_size) setting')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume {args.resume}: no such checkpoint')
        check_resumable(args.resume)
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def check_amp_device(cfg: Config, config: str) -> None:
    """Exit with a message when ``AmpOptimWrapper`` is asked for on a machine without an
    accelerator (mmengine's wrapper would stop with a bare ``AssertionError``)."""
    from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                                 is_npu_available)
    if cfg.get('optim_wrapper', {}).get('type') != 'AmpOptimWrapper':
        return
    if (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available()):
        return
    sys.exit(f'error: --amp (AmpOptimWrapper, in {config} or from --amp) needs a CUDA GPU '
             '(or an NPU/MLU/MUSA device) and this machine has none (torch.cuda.is_available() '
             'is False). Train without --amp (full precision on the CPU), or run on a machine '
             'with a GPU and a CUDA build of PyTorch.')


def main(argv: Optional[List[str]] = None) -> None:
    """Train as ``tools/train.py`` does with ``argv`` (default: ``sys.argv[1:]``)."""
    args = parse_args(argv)
    with safe_loading():  # load_from, --resume, init_cfg, any scheme: weights only
        cfg = merge_args(load_config(args), args)
        build_runner(cfg).train()

