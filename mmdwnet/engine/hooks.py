"""Training hooks of mmdwnet (registered in mmengine's root ``HOOKS``: any default scope)."""
from typing import TYPE_CHECKING, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mmdwnet.utils import inductor_compat

if TYPE_CHECKING:  # mmengine.runner is heavy; only the annotations need it
    from mmengine.runner import Runner


@HOOKS.register_module()
class CompileModulesHook(Hook):
    """``torch.compile`` the model's submodules; the optimizer step stays eager.

    mmengine's ``compile=True`` compiles the whole ``train_step``, optimizer included; with
    AdamW and ``paramwise_cfg`` (every config here) the optimizer's param groups hold
    ``ConfigDict`` values that TorchDynamo cannot trace (``InternalTorchDynamoError:
    'UserDefinedDictVariable' object has no attribute 'items'``). This hook compiles
    ``modules`` of the model in place instead (``nn.Module.compile``: the same parameters and
    state-dict keys, so the optimizer, checkpoints and resuming are unchanged) and turns the
    runner's whole-step compilation off. The config's ``compile`` (True or a dict of
    ``torch.compile`` options) is honoured; the hook acts only when it is set (or
    ``compile_cfg`` is given). mmdwnet's classification runtime (``_base_/default_runtime.py``)
    lists the hook, so ``compile = True`` (or ``--cfg-options compile=True``) is all a config
    needs; configs that replace ``custom_hooks`` add it themselves::

        compile = True                       # or dict(mode='max-autotune', ...)
        custom_hooks = [dict(type='CompileModulesHook')]   # compiles model.backbone

    Args:
        modules (Sequence[str]): dotted names of the submodules to compile. Default:
            ``('backbone',)``.
        compile_cfg (dict | None): ``torch.compile`` options; they override the config's
            ``compile`` dict. Default: None.
    """

    priority = 'VERY_HIGH'

    def __init__(self, modules: Sequence[str] = ('backbone', ),
                 compile_cfg: Optional[dict] = None) -> None:
        if isinstance(modules, str):
            modules = (modules, )
        if not modules:
            raise ValueError('CompileModulesHook: modules is empty; name at least one '
                             "submodule, e.g. modules=('backbone',)")
        self.modules = tuple(modules)
        self.compile_cfg = dict(compile_cfg or {})
        self.compiled = []

    def _options(self, runner: 'Runner') -> dict:
        option = runner.cfg.get('compile', None)
        if option is not None and not isinstance(option, (bool, dict)):
            raise TypeError(f'compile must be a bool or a dict of torch.compile options, got '
                            f'{option!r}')
        options = dict(option) if isinstance(option, dict) else {}
        options.update(self.compile_cfg)
        # mmengine would compile the whole train_step / test_step: turn that off.
        runner.cfg['compile'] = None
        return options

    def before_run(self, runner: 'Runner') -> None:
        requested = runner.cfg.get('compile', None)
        if not requested and not self.compile_cfg:
            return  # compile not asked for: the hook (in every default runtime) does nothing
        options = self._options(runner)
        inductor_compat.install()  # dynamic shapes on CPU (see mmdwnet.utils.inductor_compat)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for name in self.modules:
            try:
                module = model.get_submodule(name)
            except AttributeError as e:
                children = [n for n, _ in model.named_children()]
                raise AttributeError(f'CompileModulesHook: the model has no submodule {name!r}; '
                                     f'its children are {children}') from e
            if name not in self.compiled:
                module.compile(**options)
                self.compiled.append(name)
        runner.logger.info(f'CompileModulesHook: compiled {list(self.modules)} with '
                           f'torch.compile({options}); the optimizer step runs eagerly. The '
                           'first iterations are slow while the graphs compile.')


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run continue with the random numbers of the uninterrupted run.

    mmengine's resume restores the weights, optimizer, schedulers, epoch/iteration and the
    sampler's seed, not the random generators: augmentations (``RandomCrop`` in the main
    process, NumPy's generator), drop path and Mixup/CutMix of a resumed run then draw other
    numbers than the uninterrupted run would have. This hook

    * reseeds ``random``, NumPy and torch at the start of every epoch from the run's seed and
      the epoch (so a run resumed from an end-of-epoch checkpoint draws what the uninterrupted
      run drew, whatever happened before, e.g. validation), and through it the seeds of the
      epoch's data-loading workers (see :func:`~mmdwnet.engine.randomness.
      epoch_seeded_worker_init_fn`);
    * saves the generators' states into every checkpoint (``checkpoint['rng_state']``) and,
      with :class:`~mmdwnet.engine.ResumableEpochBasedTrainLoop`, restores them when a run
      resumes from a checkpoint written in the middle of an epoch.

    mmdwnet's classification runtime (``_base_/default_runtime.py``) lists it; configs that
    replace ``custom_hooks`` add it themselves. Bit-identical results also need deterministic
    kernels (CPU, or ``randomness.deterministic=True`` on GPU) and non-persistent data-loading
    workers (``persistent_workers=False``: persistent workers keep their generators across
    epochs, which no checkpoint can hold).
    """

    priority = 'VERY_HIGH'  # reseed before any other hook draws in before_train_epoch

    def __init__(self) -> None:
        self._loaded = None

    def before_train_epoch(self, runner: 'Runner') -> None:
        from .randomness import seed_everything
        seed_everything(runner.seed, runner.epoch)

    def before_save_checkpoint(self, runner: 'Runner', checkpoint: dict) -> None:
        from .randomness import get_rng_state
        checkpoint['rng_state'] = get_rng_state()

    def after_load_checkpoint(self, runner: 'Runner', checkpoint: dict) -> None:
        self._loaded = checkpoint.get('rng_state')

    def restore_rng_state(self, runner: 'Runner') -> None:
        """Restore the generators saved with the resumed checkpoint (once)."""
        from .randomness import set_rng_state
        if self._loaded is None:
            runner.logger.warning('the resumed checkpoint holds no random state (written '
                                  'without ExactResumeHook): the rest of this epoch draws '
                                  'other random numbers than the interrupted run would have')
            return
        set_rng_state(self._loaded)
        self._loaded = None
