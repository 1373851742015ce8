"""Training-step speed with the backbone compiled (``CompileModulesHook``'s way) against eager.

    python tools/analysis_tools/benchmark_compile_train.py --out docs/benchmark_compile.md

One training step = ``ImageClassifier.loss`` forward, backward, and the config's optimizer
wrapper (AdamW with ``paramwise_cfg``, gradient clipping) -- what mmengine's ``train_step`` does
after the data preprocessor. "compiled" compiles ``model.backbone`` in place
(``nn.Module.compile``) and keeps the optimizer step eager, as ``CompileModulesHook`` does in a
training run (mmengine's own ``compile=True`` fails on these optimizer settings). Both models
start from the same weights; rounds alternate eager / compiled; the first compiled step (graph
capture and code generation) is reported separately. The section is written into ``--out``
between ``<!-- compile-train -->`` markers (replaced on a rerun, the rest of the file kept).
The code is :func:`mmdwnet.benchmark.measure.measure_compiled_training` and
:func:`mmdwnet.benchmark.cli.compile_train_main`.
"""
from mmdwnet.benchmark.cli import compile_train_main

if __name__ == '__main__':
    compile_train_main()
