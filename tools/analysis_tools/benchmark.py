"""Speed / memory benchmark of the paper's Table 2 tiny models against mmpretrain's Swin-T.

    python tools/analysis_tools/benchmark.py --out docs/benchmark.md      (``make bench``)
    python tools/analysis_tools/benchmark.py --roofline-only --out docs/benchmark.md
    python tools/analysis_tools/benchmark.py --models dwnet swin --rounds 3 --no-train --out /tmp/b.md
    python tools/analysis_tools/benchmark.py --device cuda   (``make bench-gpu``, docs/benchmark_gpu.md)

What is measured, in one process (the code is :mod:`mmdwnet.benchmark`; the models, targets
and roofline settings are data in ``docs/benchmark_targets.yml``):

* every model is an mmpretrain ``ImageClassifier`` built from its config (the list's
  ``config``), the reference from mmpretrain's own ``SwinTransformer(arch='tiny')``;
* CPU (``--threads`` intra-op threads): inference images/s at ``--batch`` and at batch 1, fused
  (``mmcv.cnn.fuse_conv_bn``) and not, with the dense fast path off ("plain modules"); one
  training step at ``--batch``; peak memory (``torch.profiler``); ratios to the reference and
  to mmdwnet's Swin-T (models interleaved per round); FLOPs; the aggregation op against its
  ``F.unfold`` formulation; then the roofline section (``--no-roofline`` skips it,
  ``--roofline-only`` writes only it into ``--out`` between ``<!-- roofline -->`` markers,
  ``--quick`` runs it on a tiny model in seconds): the dense peak measured in the same run,
  each model's achieved GFLOP/s and % of peak against the targets, peak forward memory, and
  where the time goes per op class (``torch.profiler``);
* CUDA (``--device cuda``, every ``--batch``, default 64 and 128): fp32, AMP and AMP
  channels-last inference, one AMP training step, peak ``torch.cuda`` memory, the ops on the
  Triton backend. Refuses to run, and writes nothing, without a CUDA device.

How the speed is obtained is told in docs/benchmark_notes.md, which the reports link to.
"""
from mmdwnet.benchmark.cli import main

if __name__ == '__main__':
    main()
