"""Measure the paper's Table 1 properties of the spatial mixers by probing them numerically.

* :mod:`.probes` -- the measurement: connection tensors of a mixer's aggregation hook and the
  properties derived from them (:func:`measure_mixer`, :func:`probe_mixers`);
* :mod:`.report` -- their presentation: markdown and matplotlib tables, the relation graph
  (paper Figure 3), JSON (:func:`write_outputs`).

The command line is ``tools/analysis_tools/connectivity.py`` (:mod:`.cli`).
"""
from .probes import (EQUAL_TOL, PAPER_VARIANTS, ZERO_TOL, MixerProperties, build_probe_mixer,
                     connection_tensor, default_mixer_configs, measure_mixer, mixer_name,
                     parse_mixer_config, probe_mixers, registered_mixers)
from .report import (PROPERTY_COLUMNS, relation_graph, save_relation_graph_png, save_table_png,
                     table_rows, to_markdown, write_outputs)

__all__ = [
    'MixerProperties', 'parse_mixer_config', 'registered_mixers', 'default_mixer_configs',
    'build_probe_mixer', 'connection_tensor', 'measure_mixer', 'probe_mixers', 'mixer_name',
    'PROPERTY_COLUMNS', 'table_rows', 'to_markdown', 'save_table_png', 'relation_graph',
    'save_relation_graph_png', 'write_outputs', 'PAPER_VARIANTS', 'ZERO_TOL', 'EQUAL_TOL'
]
