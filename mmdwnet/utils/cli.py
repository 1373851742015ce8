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


def override_data_root(cfg: Config, data_root: str) -> int:
    """Set the config's ``data_root`` variable to ``data_root`` everywhere it was used.

    A config's top-level ``data_root`` is copied into the datasets when the file is parsed, so
    ``--cfg-options data_root=DIR`` alone would change nothing; here every ``data_root`` entry
    (datasets of every loader, wrapped datasets included) that holds the config's value becomes
    ``DIR``. Returns how many were replaced.

    Raises:
        ValueError: the config has no top-level ``data_root`` or no dataset uses it.
    """
    old = cfg.get('data_root', None)
    if old is None:
        raise ValueError(f'--cfg-options data_root={data_root}: {cfg.filename} has no top-level '
                         'data_root; set the loaders\' dataset.data_root instead')

    def replace(node) -> int:
        count = 0
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'data_root' and value == old:
                    node[key] = data_root
                    count += 1
                else:
                    count += replace(value)
        elif isinstance(node, (list, tuple)):
            count += sum(replace(item) for item in node)
        return count

    count = sum(replace(cfg[key]) for key in list(cfg.keys()) if key != 'data_root')
    if count == 0:
        raise ValueError(f'--cfg-options data_root={data_root}: no dataset of {cfg.filename} '
                         f'uses its data_root {old!r}; set the loaders\' dataset.data_root')
    cfg.data_root = data_root
    return count


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
        options = dict(args.cfg_options)
        if 'data_root' in options:
            override_data_root(cfg, options.pop('data_root'))
        cfg.merge_from_dict(options)
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
