from .hooks import CompileModulesHook, ExactResumeHook
from .loops import ResumableEpochBasedTrainLoop
from .randomness import epoch_seeded_worker_init_fn

__all__ = ['CompileModulesHook', 'ExactResumeHook', 'ResumableEpochBasedTrainLoop',
           'epoch_seeded_worker_init_fn']
