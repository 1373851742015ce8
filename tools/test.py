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
"""
from mmdwnet.apis.test import main

if __name__ == '__main__':
    main()
