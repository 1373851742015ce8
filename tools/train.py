"""Train a model from a config with mmengine's Runner (classification, detection, segmentation).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The config's ``default_scope`` (mmpretrain / mmdet / mmseg) selects the toolbox.
"""
from mmdwnet.apis.train import main

if __name__ == '__main__':
    main()
