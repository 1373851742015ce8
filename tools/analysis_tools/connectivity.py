"""Measure the paper's Table 1 properties of the spatial mixers by probing them numerically.

    python tools/analysis_tools/connectivity.py [--mixer CFG ...] [--only] [--out-dir DIR]
        [--channels 8] [--heads 2] [--size 14 14] [--cost-shape 96 56 56] [--cost-heads 3]

Every mixer registered in ``mmdwnet.models.mixers.MIXERS`` is probed with its default arguments
(one without the ``aggregation`` analysis hook is reported as not probed), plus the paper's variants (Table 2 Local MLP, shifted windows, Table 4
sharing ablations) and every ``--mixer`` config, given as ``"dict(type='DWConv',
kernel_size=5)"`` or JSON (``--only``: just those).  The measured table is printed; with
``--out-dir`` it is also written as ``connectivity.md``, ``connectivity.png`` (matplotlib
table), ``connectivity.json`` and ``relation_graph.png`` (paper Figure 3, drawn from the
measured properties).  See docs/analysis.md for what each column measures.
"""
import sys

from mmdwnet.analysis.connectivity.cli import main

if __name__ == '__main__':
    sys.exit(main())
