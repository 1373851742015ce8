from .hooks import CompileModulesHook, ExactResumeHook
from .loops import ResumableEpochBasedTrainLoop
from .randomness import epoch_seeded_worker_init_fn
from .safe_loading_hook import SafeLoadingHook

__all__ = ['CompileModulesHook', 'ExactResumeHook', 'ResumableEpochBasedTrainLoop',
           'SafeLoadingHook', 'epoch_seeded_worker_init_fn']
