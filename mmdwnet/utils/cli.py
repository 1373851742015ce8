"""What ``tools/train.py`` and ``tools/test.py`` share: common options, config, runner."""
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmdwnet.registry import explain_unknown_types
from mmdwnet.utils.cpu_ddp import cpu_ddp


def add_runner_args(parser, work_dir_help):
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, e.g. train_cfg.max_epochs=1')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_with_local_rank(parser, argv=None):
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def is_url(path):
    """Whether ``path`` is a URL mmengine's checkpoint loader downloads (http, https)."""
    return str(path).startswith(('http://', 'https://'))


def load_config(args, *required_files):
    """Read ``args.config`` and apply the common options.

    Exits with a message when the config or one of ``required_files`` (label, path) is missing.
    """
    for label, path in (('config file', args.config), ) + required_files:
        if not osp.isfile(path):
            sys.exit(f'error: {label} {path} does not exist')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg):
    """``Runner.from_cfg`` (or the config's ``runner_type``), unknown types explained; the
    parameter schedulers are fitted into the training length first
    (:func:`mmdwnet.engine.schedules.fit_schedulers_to_training`); a distributed launch without
    CUDA gets :func:`mmdwnet.utils.cpu_ddp.cpu_ddp`."""
    from mmdwnet.engine.schedules import fit_schedulers_to_training
    fit_schedulers_to_training(cfg)
    with explain_unknown_types(), cpu_ddp(cfg):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    from mmdwnet.converters.loading import attach_checkpoint_hooks
    attach_checkpoint_hooks(runner.model)  # this model only: head mapping, strict check
    return runner
