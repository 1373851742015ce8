"""compile=True with AdamW + paramwise_cfg: CompileModulesHook compiles the backbone and leaves
the optimizer eager; a few training iterations equal the eager run's."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import mmdwnet  # noqa: F401
from mmdwnet.engine import CompileModulesHook

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / 'configs' / 'classification' / 'digits' / 'dwnet-nano_1xb64-10e_digits-32px.py'


def write_folder(root, classes=('a', 'b'), n=4, size=32):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / 'train' / name).mkdir(parents=True)
        for j in range(n):
            img = rng.integers(0, 80, (size, size, 3)) + 120 * c
            Image.fromarray(img.astype(np.uint8)).save(root / 'train' / name / f'{j}.png')
    return root


def config(tmp_path, data_root, name, compile_cfg=None):
    """The digits config (AdamW + paramwise_cfg) shrunk: 2 classes, 2 iterations, no val."""
    cfg = Config.fromfile(str(DIGITS))
    cfg.model.backbone.arch = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
    cfg.model.head.update(num_classes=2, in_channels=64)
    cfg.data_preprocessor.num_classes = 2
    cfg.train_dataloader.update(batch_size=4)
    cfg.train_dataloader.dataset.data_root = str(data_root)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.param_scheduler = None
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = f'compile_{name}'
    if compile_cfg is not None:
        cfg.compile = compile_cfg  # all it takes: the default runtime lists CompileModulesHook
    return cfg


def train(cfg):
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    runner.train()
    return runner


@pytest.mark.slow
def test_compiled_training_equals_eager_training(tmp_path):
    import torch._dynamo
    data = write_folder(tmp_path / 'data')
    assert {'paramwise_cfg', 'optimizer'} <= set(Config.fromfile(str(DIGITS)).optim_wrapper)
    eager = train(config(tmp_path, data, 'eager'))
    hook, = [h for h in eager.hooks if isinstance(h, CompileModulesHook)]
    assert hook.compiled == []  # in the default runtime, idle unless `compile` is set
    assert getattr(eager.model.backbone, '_compiled_call_impl', None) is None
    torch._dynamo.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    # aot_eager: TorchDynamo + AOTAutograd (the graph capture that failed on the optimizer),
    # without inductor's C++ compilation
    compiled = train(config(tmp_path, data, 'compiled', dict(backend='aot_eager')))
    hook, = [h for h in compiled.hooks if isinstance(h, CompileModulesHook)]
    assert hook.compiled == ['backbone']
    assert counters['stats']['unique_graphs'] >= 1  # TorchDynamo captured the backbone
    assert compiled.model.backbone._compiled_call_impl is not None  # nn.Module.compile
    assert compiled.cfg.get('compile') is None  # mmengine's whole-train_step compile is off
    assert compiled.iter == eager.iter == 2
    got, ref = compiled.model.state_dict(), eager.model.state_dict()
    assert got.keys() == ref.keys()  # no _orig_mod. prefix: checkpoints unchanged
    for key, value in ref.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=key)
    init = Runner.from_cfg(config(tmp_path, data, 'init'))  # same seed: the initial weights
    init._init_model_weights()
    moved = [k for k, v in init.model.state_dict().items()
             if v.is_floating_point() and not torch.allclose(v, ref[k])]
    assert len(moved) > 10  # the two iterations did train


def test_hook_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match='modules is empty'):
        CompileModulesHook(modules=())

    class FakeRunner:
        cfg = Config(dict(compile='yes'))
        model = torch.nn.Sequential()
        logger = None

    with pytest.raises(TypeError, match="compile must be a bool or a dict.*'yes'"):
        CompileModulesHook().before_run(FakeRunner())
    FakeRunner.cfg = Config(dict(compile=True))
    with pytest.raises(AttributeError, match="no submodule 'backbone'"):
        CompileModulesHook().before_run(FakeRunner())
