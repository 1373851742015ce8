"""Benchmarks of mmdwnet models (``make bench``, ``make bench-gpu``, ``make bench-compile``).

* :mod:`.suites` -- what is measured, as data (``docs/benchmark_targets.yml``): models (config
  files or model dicts), targets, roofline settings;
* :mod:`.measure` -- timers, peak memory, :func:`measure_model` for any ``nn.Module``;
* :mod:`.roofline` -- dense peak, achieved GFLOP/s and % of peak, op-class profile;
* :mod:`.report` -- markdown rendering.

Benchmark a model defined anywhere (e.g. with a mixer outside mmdwnet)::

    >>> from mmdwnet.benchmark import measure_model
    >>> r = measure_model(model, (3, 224, 224), batch=8, rounds=3)
    >>> r['images_per_s'], r['gflops_per_s'], r['peak_mib']

or in the roofline suite: ``run_roofline(custom_suite({'mine': dict(label='My-T',
config='path/to/config.py')}))`` (or ``model=dict(type='ImageClassifier', ...)`` instead of
``config``).

The CLIs are ``tools/analysis_tools/benchmark.py`` and ``benchmark_compile_train.py``.
"""
from .measure import measure_model
from .roofline import classify_event, dense_peak, op_class_breakdown, run_roofline
from .suites import build_backbone, build_model, custom_suite, load_suite

__all__ = ['measure_model', 'dense_peak', 'run_roofline', 'op_class_breakdown',
           'classify_event', 'load_suite', 'custom_suite', 'build_model', 'build_backbone']
