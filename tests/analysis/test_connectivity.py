"""Measured connectivity properties (paper Table 1) of the mixers, and the analysis CLI."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

import mmdwnet  # noqa: F401
from mmdwnet.analysis.connectivity import cli as tool
from mmdwnet.analysis.connectivity import (build_probe_mixer, connection_tensor,
                                           default_mixer_configs, measure_mixer,
                                           parse_mixer_config, probe_mixers, registered_mixers,
                                           relation_graph, to_markdown)

C, HEADS, SIZE = 8, 2, (14, 14)
COST = dict(cost_shape=(16, 14, 14), cost_heads=2)

# The paper's Table 1 rows (plus I-D-DW and sliding attention, Table 5), as the measured
# quantities: sparse between channels, sparse between positions, sharing across positions
# ('full' = every position, 'block' = across windows, 'none'), channels sharing one weight,
# dynamic weight.  C=8 channels, 2 heads: C/heads = 4; I-D-DW groups num_heads=2 channels.
PAPER_TABLE1 = {
    'LocalMLP': (True, 'local', 'block', C // HEADS, False),
    'ShiftedWindowAttention': (True, 'local', 'none', C // HEADS, True),
    'DWConv': (True, 'local', 'full', 1, False),
    'DynamicDWConv': (True, 'local', 'full', 1, True),
    'IDynamicDWConv': (True, 'local', 'none', HEADS, True),
    'SlidingWindowAttention': (True, 'local', 'none', C // HEADS, True),
}


@pytest.fixture(scope='module')
def measured():
    cfgs = [dict(type=name) for name in PAPER_TABLE1] + [
        dict(type='LocalMLP', share_positions=False)]
    results = probe_mixers(cfgs, channels=C, num_heads=HEADS, size=SIZE, **COST)
    return {r.name: r for r in results}


def _row(r):
    return (r.sparse_channels, r.positions, r.share_positions, r.channels_per_weight, r.dynamic)


@pytest.mark.parametrize('name', sorted(PAPER_TABLE1))
def test_measured_rows_match_paper_table1(measured, name):
    r = measured[f'{name}()']
    assert _row(r) == PAPER_TABLE1[name]
    assert r.receptive_field == (7, 7) and r.connections == 49
    assert r.cross_channel == 0
    # the 1x1 projections mix channels: the whole mixer is dense across channels
    assert not r.mixer_sparse_channels


def test_detail_columns(measured):
    assert measured['LocalMLP()'].share_period == 7  # shared across windows only
    assert measured['LocalMLP()'].sampling == 'window'
    assert measured['ShiftedWindowAttention()'].sampling == 'window'
    assert measured['SlidingWindowAttention()'].sampling == 'sliding'
    assert measured['DWConv()'].sampling == 'sliding'
    # Table 2's Local MLP (per-window weights, Table 4 "SC only") shares no weights across positions
    assert _row(measured["LocalMLP(share_positions=False)"]) == (True, 'local', 'none', 4, False)
    # how dynamic weights are computed: pooled map / the position itself / dot products
    assert measured['DynamicDWConv()'].weight_source == 'global'
    assert measured['IDynamicDWConv()'].weight_source == 'position'
    assert measured['SlidingWindowAttention()'].weight_source == 'local'
    assert measured['SlidingWindowAttention()'].weight_source_extent == (7, 7)
    assert measured['ShiftedWindowAttention()'].weight_source == 'local'
    assert measured['DWConv()'].weight_source == 'static'
    # D-DW's kernel generator pools the whole map: the mixer sees every position
    assert measured['DynamicDWConv()'].mixer_receptive_field == SIZE
    assert measured['DWConv()'].mixer_receptive_field == (7, 7)


def test_user_configs_are_measured_not_looked_up():
    r = measure_mixer("dict(type='DWConv', kernel_size=3)", channels=4, num_heads=2,
                      size=(9, 9), cost_shape=None)
    assert r.receptive_field == (3, 3) and r.connections == 9
    r = measure_mixer('{"type": "SlidingWindowAttention", "kernel_size": 5}', channels=4,
                      num_heads=1, size=(9, 9), cost_shape=None)
    assert r.receptive_field == (5, 5) and r.channels_per_weight == 4 and r.dynamic
    r = measure_mixer(dict(type='IDynamicDWConv', kernel_size=3, group_channels=4),
                      channels=8, num_heads=2, size=(9, 9), cost_shape=None)
    assert r.channels_per_weight == 4 and r.weight_groups == 2
    r = measure_mixer(dict(type='DWConv', share_channels=True), channels=8, num_heads=4,
                      size=(14, 14), cost_shape=None)
    assert (r.share_positions, r.channels_per_weight) == ('full', 2)
    r = measure_mixer(dict(type='ShiftedWindowAttention', window_size=5), channels=4,
                      num_heads=2, size=(10, 10), cost_shape=None)
    assert r.receptive_field == (5, 5) and r.sampling == 'window'


class _DenseMixer(nn.Module):
    """Test mixer whose 'aggregation' mixes channels (1x1 conv) and adds a position-weighted
    sum over the whole map."""

    def __init__(self, embed_dims, input_resolution):
        super().__init__()
        self.mix = nn.Conv2d(embed_dims, embed_dims, 1)
        self.pos = nn.Parameter(torch.rand(1, 1, *input_resolution) + 0.5)

    def forward(self, x):
        return self.aggregation(x)[1](x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def aggregation(self, x):
        return x.permute(0, 3, 1, 2), lambda v: self.mix(v) + (v * self.pos).sum(
            (2, 3), keepdim=True)


class _NonlinearHook(_DenseMixer):

    def aggregation(self, x):
        return x.permute(0, 3, 1, 2), lambda v: torch.relu(v) + 1


def test_probe_detects_dense_mixers():
    r = measure_mixer(dict(type=_DenseMixer), channels=4, num_heads=1, size=(6, 6),
                      cost_shape=None)
    assert not r.sparse_channels and r.cross_channel > 0
    assert r.positions == 'full' and r.receptive_field == (6, 6) and r.connections == 36
    assert r.share_positions == 'none'  # weights depend on the input position
    assert not r.dynamic and r.name == '_DenseMixer()'


def test_bad_hooks_and_configs_fail_clearly():
    with pytest.raises(ValueError, match='not affine'):
        measure_mixer(dict(type=_NonlinearHook), channels=4, num_heads=1, size=(6, 6),
                      cost_shape=None)
    with pytest.raises(TypeError, match='aggregation'):
        build_probe_mixer(dict(type=nn.Identity), 4, 1, (6, 6))
    with pytest.raises(KeyError, match='DWConv'):
        measure_mixer(dict(type='DWConvv'), cost_shape=None)
    with pytest.raises(ValueError, match='cannot parse'):
        parse_mixer_config("dict(type='DWConv', kernel_size=)")
    with pytest.raises(ValueError, match='`type`'):
        parse_mixer_config('{"kernel_size": 3}')
    with pytest.raises(ValueError, match='divisible'):
        measure_mixer(dict(type='DWConv'), channels=6, num_heads=4, cost_shape=None)
    assert parse_mixer_config("dict(type='DWConv', kernel_size=5)") == dict(type='DWConv',
                                                                          kernel_size=5)
    assert parse_mixer_config("{'type': 'DWConv'}") == dict(type='DWConv')


@pytest.mark.parametrize('size', [(14, 14), (10, 12)])
def test_hooks_reproduce_forward(size):
    """``aggregation`` is the real aggregation: with the projections it gives ``forward``."""
    assert set(PAPER_TABLE1) <= set(registered_mixers())
    assert 'OutlookAttention' in registered_mixers()  # VOLO's mixer implements the hook too
    torch.manual_seed(0)
    for cfg in default_mixer_configs():
        mixer = build_probe_mixer(cfg, C, HEADS, size)
        x = torch.randn(1, *size, C)
        with torch.no_grad():
            values, aggregate = mixer.aggregation(x)
            out = aggregate(values)
            if hasattr(mixer, 'proj_out'):
                out = mixer.norm_out(mixer.proj_out(mixer.act(mixer.norm_mid(out))))
                out = out.permute(0, 2, 3, 1)
            else:
                out = mixer.proj(out.permute(0, 2, 3, 1))
            torch.testing.assert_close(out, mixer(x), rtol=1e-4, atol=1e-5, msg=str(cfg))


def test_connection_tensor_is_the_jacobian():
    mixer = build_probe_mixer(dict(type='IDynamicDWConv', kernel_size=3), 4, 2, (5, 5))
    x = torch.randn(1, 5, 5, 4)
    a = connection_tensor(mixer, x)
    values, aggregate = mixer.aggregation(x)
    jac = torch.autograd.functional.jacobian(aggregate, values)[0, :, :, :, 0]
    torch.testing.assert_close(a, jac, rtol=1e-5, atol=1e-6)


def test_costs_and_relation_graph(measured):
    r = measured['LocalMLP()']
    assert r.params == sum(p.numel() for p in build_probe_mixer(
        dict(type='LocalMLP'), 16, 2, (14, 14)).parameters())
    # one static window matrix broadcast over all windows costs as much as one per window
    assert r.flops == measured['LocalMLP(share_positions=False)'].flops > 0
    results = list(measured.values())
    nodes, edges = relation_graph(results)
    names = [{results[m].name for m in members} for members in nodes]
    labels = {frozenset(n for i in (a, b) for n in names[i]): lab for a, b, lab in edges}
    assert labels[frozenset({'DWConv()', 'DynamicDWConv()'})] == ['dynamic weight']
    assert labels[frozenset({'LocalMLP()', 'LocalMLP(share_positions=False)'})] == [
        'sharing across positions (block / none)']
    assert labels[frozenset({'LocalMLP(share_positions=False)',
                             'ShiftedWindowAttention()'})] == ['dynamic weight']
    assert labels[frozenset({'ShiftedWindowAttention()', 'SlidingWindowAttention()'})] == [
        'sampling (window / sliding)']
    assert labels[frozenset({'IDynamicDWConv()', 'SlidingWindowAttention()'})] == [
        'weights from (own position / neighbourhood)']
    table = to_markdown(results)
    assert table.count('\n|') == len(results) + 1 and 'block-wise (period 7)' in table


def test_cli_writes_table_png_json_and_graph(repo_root, tmp_path, capsys):
    rc = tool.main(['--only', '--mixer', "dict(type='DWConv', kernel_size=3)", '--mixer',
                    '{"type": "LocalMLP", "window_size": 5}', '--channels', '4', '--heads',
                    '2', '--size', '10', '10', '--cost-shape', '8', '10', '10',
                    '--cost-heads', '2', '--out-dir', str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "DWConv(kernel_size=3)" in printed and 'local 3x3' in printed
    assert 'block-wise (period 5)' in printed
    data = json.loads((tmp_path / 'connectivity.json').read_text())
    assert [m['receptive_field'] for m in data['mixers']] == [[3, 3], [5, 5]]
    assert data['relation_graph']['edges'][0]['differ']
    assert (tmp_path / 'connectivity.md').read_text() in printed
    import matplotlib.image as mpimg
    for png in ('connectivity.png', 'relation_graph.png'):
        assert mpimg.imread(tmp_path / png).shape[0] > 100


def test_cli_rejects_bad_input(repo_root, capsys):
    with pytest.raises(SystemExit) as e:
        tool.main(['--mixer', "dict(type='DWConv'"])
    assert e.value.code == 2 and 'cannot parse' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(['--only'])
    assert '--only needs' in capsys.readouterr().err
    assert tool.main(['--only', '--mixer', "dict(type='DWConvv')", '--no-cost']) == 2
    assert 'not a registered' in capsys.readouterr().err


def test_tool_script_wraps_the_package_cli(repo_root, tmp_path):
    """tools/analysis_tools/connectivity.py runs as a script: the package's table on stdout,
    exit status 2 with the message for an unknown mixer."""
    script = repo_root / 'tools' / 'analysis_tools' / 'connectivity.py'
    proc = subprocess.run([sys.executable, str(script), '--only', '--mixer',
                           "dict(type='DWConv', kernel_size=3)", '--channels', '4', '--heads',
                           '2', '--size', '6', '6', '--no-cost'],
                          capture_output=True, text=True, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr
    assert 'DWConv(kernel_size=3)' in proc.stdout and 'local 3x3' in proc.stdout
    proc = subprocess.run([sys.executable, str(script), '--only', '--mixer',
                           "dict(type='DWConvv')", '--no-cost'],
                          capture_output=True, text=True, cwd=repo_root)
    assert proc.returncode == 2 and 'not a registered' in proc.stderr
