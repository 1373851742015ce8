default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmdwnet', 'mmdwnet.datasets'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # one checkpoint per epoch, the last 3 and the best top-1 kept
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3,
                    save_best='accuracy/top1', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)

# ``compile = True`` compiles the backbone and keeps the optimizer step eager
# (mmdwnet.engine.CompileModulesHook; it does nothing unless ``compile`` is set). EMA is off, as
# in the paper (append ``dict(type='EMAHook')`` to try it).
#
# ExactResumeHook saves the random generators into every checkpoint and reseeds them every epoch,
# so that a resumed run continues bit for bit as the uninterrupted one (with the schedules'
# ResumableEpochBasedTrainLoop, also from a checkpoint written mid-epoch; docs/classification.md).
custom_hooks = [
    dict(type='SafeLoadingHook'),
    dict(type='CompileModulesHook'),
    dict(type='ExactResumeHook')
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
