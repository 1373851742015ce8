"""mmdwnet.benchmark's roofline: the GFLOP/s and % of peak arithmetic on a fake timer, the
op-class classifier on made-up and on real profiler events, the report rendering, and a run on
a tiny suite (seconds). No timed asserts: speeds are never compared with a threshold here."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mmdwnet.benchmark import measure, measure_model, report, roofline, suites


@pytest.fixture()
def fake_timer(monkeypatch):
    """Every timed call takes 0.5 s."""
    monkeypatch.setattr(measure, 'timed', lambda fn, device=None: (fn(), 0.5)[1])
    monkeypatch.setattr(roofline, 'timed', lambda fn, device=None: (fn(), 0.5)[1])


def test_roofline_math_on_known_flops(fake_timer):
    model = nn.Conv2d(3, 8, 1)  # any module, defined anywhere
    infer = measure_model(model, (3, 4, 4), batch=2, rounds=2, memory=False)
    assert infer['macs'] == 3 * 8 * 16  # counted by mmdwnet.analysis.count_flops
    assert infer['gflop'] == pytest.approx(2 * 384 * 2 / 1e9)
    assert infer['seconds'] == [0.5, 0.5] and infer['images_per_s'] == 4.0
    assert infer['gflops_per_s'] == pytest.approx(infer['gflop'] / 0.5)
    train = measure_model(model, (3, 8, 8), batch=4, mode='train', flops=1e9, rounds=1,
                          memory=False)
    assert train['gflop'] == pytest.approx(2 * 1e9 * 4 * 3 / 1e9)  # training: 3x the forward
    assert train['gflops_per_s'] == pytest.approx(48.0)
    assert roofline.roofline_fraction(24.0, 0.5, 96.0) == (48.0, 0.5)
    with pytest.raises(ValueError, match='must be > 0'):
        roofline.roofline_fraction(1.0, 0.0, 96.0)
    with pytest.raises(ValueError, match="mode must be 'infer' or 'train'"):
        measure_model(model, (3, 4, 4), mode='eval')


def test_dense_peak_is_the_best_of_conv_and_sgemm(fake_timer):
    peak = roofline.dense_peak(rounds=2, quick=True)
    conv, sgemm = 2 * 2 * 14 * 14 * 64 * 128 / 0.5 / 1e9, 2 * 256**3 / 0.5 / 1e9
    assert peak['conv'] == pytest.approx(conv) and peak['sgemm'] == pytest.approx(sgemm)
    assert peak['peak'] == max(conv, sgemm)


@pytest.mark.parametrize('name, shapes, in_gen, cls', [
    ('aten::addmm', [], False, 'dense'),
    ('mkldnn::_linear_pointwise', [], False, 'dense'),
    ('aten::mkldnn_convolution', [[8, 96, 56, 56], [384, 96, 1, 1], [384]], False, 'dense'),
    ('aten::mkldnn_convolution', [[8, 96, 56, 56], [96, 1, 7, 7], [96]], False, 'aggregation'),
    ('aten::convolution_backward', [[8, 96, 56, 56], [8, 96, 56, 56], [96, 1, 7, 7]], False,
     'aggregation'),
    ('mmdwnet::local_aggregate_pointwise', [], True, 'aggregation'),
    ('mmdwnet::dynamic_depthwise_conv2d', [], False, 'aggregation'),
    ('aten::mkldnn_convolution', [[8, 96, 56, 56], [24, 96, 1, 1], [24]], True, 'generation'),
    ('aten::adaptive_avg_pool2d', [], True, 'generation'),
    ('aten::native_layer_norm', [], False, 'elementwise'),
    ('aten::gelu', [], False, 'elementwise'),
    ('aten::_foreach_add_', [], False, 'elementwise'),
    ('aten::permute', [], False, 'movement'),
    ('aten::copy_', [], True, 'generation'),
    ('aten::constant_pad_nd', [], False, 'movement'),
    ('autograd::engine::evaluate_function: MmBackward0', [], False, 'framework'),
    (roofline.GENERATOR_SCOPE, [], True, 'framework'),
    ('aten::some_new_op', [], False, 'other'),
    ('my_lib::fancy_kernel', [], False, 'other'),
])
def test_classify_event(name, shapes, in_gen, cls):
    assert roofline.classify_event(name, shapes, in_gen) == cls


def _event(name, us, shapes=(), parent=None, seq=-1):
    return SimpleNamespace(name=name, self_cpu_time_total=us, input_shapes=list(shapes),
                           cpu_parent=parent, sequence_nr=seq)


def test_breakdown_lists_unknown_events_by_name():
    scope = _event(roofline.GENERATOR_SCOPE, 100)
    events = [_event('aten::mm', 4000), _event('aten::add', 1000), scope,
              _event('aten::mkldnn_convolution', 2000, [[1, 8, 4, 4], [2, 8, 1, 1]], scope),
              _event('mystery::op', 500), _event('mystery::op', 250), _event('aten::view', 150)]
    res = roofline.breakdown_from_events(events)
    assert res['ms'] == dict(dense=4.0, aggregation=0.0, generation=2.0, elementwise=1.0,
                             movement=0.15, framework=0.1, other=0.75)
    assert res['total_ms'] == pytest.approx(8.0)
    assert res['other'] == {'mystery::op': 0.75}


def test_breakdown_counts_the_backward_of_generators_as_generation():
    """A backward node whose sequence number is that of a forward op inside a generator scope
    is kernel generation; other backward nodes count by their ops' names."""
    scope = _event(roofline.GENERATOR_SCOPE, 0)
    fwd = _event('aten::addmm', 1000, parent=scope, seq=5)
    node = _event('autograd::engine::evaluate_function: AddmmBackward0', 100, seq=5)
    node_other = _event('autograd::engine::evaluate_function: AddmmBackward0', 100, seq=6)
    events = [scope, fwd, _event('aten::addmm', 1000, seq=6), node, node_other,
              _event('aten::mm', 3000, parent=node), _event('aten::mm', 2000, parent=node_other)]
    res = roofline.breakdown_from_events(events)
    assert res['ms']['generation'] == pytest.approx(4.0)  # forward addmm + its backward mm
    assert res['ms']['dense'] == pytest.approx(3.0)  # the other addmm and its backward mm
    assert res['ms']['framework'] == pytest.approx(0.2)


def test_event_flops_counts_torch_products_and_onednn_linears():
    assert roofline.event_flops(SimpleNamespace(name='aten::addmm', flops=1234)) == 1234
    fast = SimpleNamespace(name='mkldnn::_linear_pointwise', flops=0,
                           input_shapes=[[2, 7, 5, 16], [32, 16], [32]])
    assert roofline.event_flops(fast) == 2 * (2 * 7 * 5) * 16 * 32
    assert roofline.event_flops(SimpleNamespace(name='mkldnn::_linear_pointwise', flops=0,
                                                input_shapes=[])) == 0
    assert roofline.event_flops(SimpleNamespace(name='aten::gelu', flops=0)) == 0
    events = [_event('mkldnn::_linear_pointwise', 1000, [[10, 4], [6, 4], [6]]),
              SimpleNamespace(**vars(_event('aten::mm', 500)), flops=300),
              SimpleNamespace(**vars(_event('aten::add', 100)), flops=99)]  # not dense
    assert roofline.breakdown_from_events(events)['dense_gflop'] == pytest.approx(
        (2 * 10 * 4 * 6 + 300) / 1e9)


@pytest.mark.parametrize('dense_ms, dense_gflop, target, bound', [
    (6.0, 48.0, 0.80, 'rest'),     # dense at peak: 70 / (0.1 + 0.12) / 400 = 79.5% < 80%
    (6.0, 40.0, 0.80, 'either'),   # each alone reaches 80%: 117% and 87.5%
    (9.0, 40.0, 0.80, 'dense'),    # other ops free: 70 / 0.225 / 400 = 77.8% < 80%
    (6.0, 40.0, 0.60, None),       # met (70%)
    (6.0, 40.0, None, None),       # no target
])
def test_bound_analysis_names_what_caps_a_row(dense_ms, dense_gflop, target, bound):
    row = dict(gflop=70.0, best_s=0.25, fraction=0.70)
    rest = (10.0 - dense_ms) / 2
    profile = dict(ms=dict(dense=dense_ms, aggregation=rest, generation=0.0, elementwise=rest,
                           movement=0.0, framework=0.0, other=0.0), total_ms=10.0,
                   dense_gflop=dense_gflop)
    b = roofline.bound_analysis(row, profile, 400.0, target)
    t_d = 0.25 * dense_ms / 10
    assert b['dense_share'] == pytest.approx(dense_ms / 10)
    assert b['dense_fraction'] == pytest.approx(dense_gflop / t_d / 400)
    assert b['ceiling_rest_free'] == pytest.approx(70 / t_d / 400)
    assert b['ceiling_dense_at_peak'] == pytest.approx(70 / (0.25 - t_d + dense_gflop / 400) / 400)
    assert b['bound'] == bound
    assert b['largest_rest'] in ('aggregation', 'elementwise')


class _Generator(nn.Module):
    """A made-up dynamic-kernel module: its convs count as kernel generation."""

    def __init__(self):
        super().__init__()
        self.reduce = nn.Conv2d(8, 4, 1)

    def generate_weight(self, x):
        return self.reduce(x)

    def forward(self, x):
        return x * self.generate_weight(x).mean(1, keepdim=True)


class _Toy(nn.Module):

    def __init__(self):
        super().__init__()
        self.pw, self.dw = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gen, self.norm = _Generator(), nn.LayerNorm(8)

    def forward(self, x):
        x = self.gen(self.dw(self.pw(x)))
        return self.norm(x.permute(0, 2, 3, 1).contiguous())


def test_op_class_breakdown_of_a_real_profile():
    model = _Toy().eval()
    x = torch.randn(2, 8, 16, 16)
    res = roofline.op_class_breakdown(measure.infer_fn(model, x), model)
    for cls in ('dense', 'aggregation', 'generation', 'elementwise', 'movement'):
        assert res['ms'][cls] > 0, (cls, res)
    assert res['total_ms'] == pytest.approx(sum(res['ms'].values()))
    assert not model.gen._forward_hooks and not model.gen._forward_pre_hooks  # removed
    train = roofline.op_class_breakdown(measure.train_step_fn(model, x), model)
    plain = roofline.op_class_breakdown(measure.train_step_fn(model, x))  # no scopes
    assert plain['ms']['generation'] == 0 < train['ms']['generation']
    # the dense products' FLOPs: the 1x1 conv alone (the generator's conv is generation)
    assert res['dense_gflop'] == pytest.approx(2 * 2 * 16 * 16 * 8 * 8 / 1e9)


def test_dense_flops_of_the_onednn_fast_path():
    """The dense fast path's oneDNN linear, which torch's profiler does not count, counts from
    its shapes: an FFN-like pair of mmdwnet Linears, 2 x rows x in x out each."""
    from mmdwnet.models.layers import Linear
    model = nn.Sequential(Linear(16, 64), nn.GELU(), Linear(64, 16)).eval()
    x = torch.randn(3, 5, 16)
    res = roofline.op_class_breakdown(measure.infer_fn(model, x))
    assert res['dense_gflop'] == pytest.approx(2 * 15 * 16 * 64 * 2 / 1e9)


def _result(suite):
    """A made-up run_roofline result for the report."""
    roof = suite['roofline']
    rows = {}
    for name in roof['models']:
        rows[name] = {}
        for s, setting in roof['settings'].items():
            frac = 0.7 if name == 'dwnet' else 0.4
            rows[name][s] = dict(gflop=100.0 * frac, best_s=0.25, macs=1e9, seconds=[0.25],
                                 images_per_s=setting['batch'] * (2.0 if name == 'dwnet' else
                                                                  1.0),
                                 peak_mib=None if setting['mode'] == 'train' else 300.0,
                                 fraction=frac)
    rows['mmpretrain-swin'] = {'infer_b1_800x1344': dict(gflop=0, best_s=1.0, fraction=None,
                                                         peak_mib=1000.0, images_per_s=1.0)}
    profile = dict(ms=dict(dense=6.0, aggregation=2.0, generation=1.0, elementwise=0.5,
                           movement=0.5, framework=0.0, other=0.0), total_ms=10.0,
                   other={'mystery::op': 0.0}, dense_gflop=48.0)
    comparison = dict(roof['throughput'][0], images_per_s={'i-dynamic-dwnet-nano': 300.0,
                                                           'dwnet-nano': 1000.0}, ratio=0.3)
    peak = dict(conv=400.0, sgemm=200.0, peak=400.0)
    return dict(peak=peak, peaks=[peak, dict(peak, peak=390.0)], rows=rows, load=[3.5, 4.0],
                comparisons=[comparison], profiles={'dwnet': {'infer_b8_224': profile}},
                threads=2, rounds=3, seconds=60.0, labels=suites.model_labels(suite))


def test_roofline_report_shows_measured_target_and_met():
    suite = suites.load_suite()
    text = '\n'.join(report.roofline_lines(_result(suite), suite, 'cmd'))
    assert '**400 GFLOP/s**' in text and 'sgemm (200)' in text and 'after them (390)' in text
    assert 'load average 3.5 -> 4.0 (start -> end)' in text
    dwnet, idw = suite['models']['dwnet']['label'], suite['models']['i-dynamic-dwnet']['label']
    # DWNet-T at 70% against its 80% target: miss; against 60% (b1 224): met
    assert f'| {dwnet} | inference b8 224x224 (classifier) | 70.0 | 250.0 | 280 | **70%** | ' \
           '>= 80% | **miss** | 300 |' in text
    assert f'| {dwnet} | inference b1 224x224 (classifier) | 70.0 | 250.0 | 280 | **70%** | ' \
           '>= 60% | met | 300 |' in text
    assert f'| {idw} | training step b8 224x224 (classifier) | 40.0 | 250.0 | 160 | **40%** ' \
           '| >= 45% | **miss** | n/a |' in text
    assert '| 300 | 1000 | **0.30x** | <= 0.50x | met |' in text  # memory ratio
    assert '| 300 | 1000 | **0.30x** | >= 0.50x | **miss** |' in text  # nano throughput
    assert f'| {dwnet} | 2.00x |' in text  # paper-shape ratio to mmdwnet Swin-T
    assert '| 60.0% | 20.0% | 10.0% | 5.0% | 5.0% | 0.0% | 0.0% | 10 |' in text
    assert '`mystery::op` 0.0 ms' in text and 'ONNX Runtime' in text
    # what bounds it: dense products 60% of the time at 80% of peak; ceilings 117% / 80%
    assert f'| {dwnet} | inference b8 224x224 (classifier) | **70%** | >= 80% | 60% | 80% | ' \
           '117% | 80% | **the other ops**: depth-wise / dynamic aggregation (20% of the time) |' \
        in text
    assert 'The peak moved' not in text  # 400 and 390: a steady run
    res = _result(suite)
    res['peaks'][0] = dict(res['peak'], peak=100.0)  # the load changed within the run
    assert '**The peak moved from 100 to 390 GFLOP/s within the run' in '\n'.join(
        report.roofline_lines(res, suite))
    # a target whose row is missing is named, not dropped
    res = _result(suite)
    del res['rows']['swin']['infer_b1_224']
    assert 'Targets not measured in this run: swin infer_b1_224' in '\n'.join(
        report.roofline_lines(res, suite))


def test_roofline_section_is_spliced_between_markers(tmp_path):
    suite = suites.load_suite()
    path = tmp_path / 'benchmark.md'
    path.write_text('# Speed\n\nlegacy tables\n')
    for _ in range(2):
        report.write_section(str(path), report.roofline_section(_result(suite), suite, 'cmd'),
                             report.ROOFLINE_BEGIN, report.ROOFLINE_END)
    text = path.read_text()
    assert text.startswith('# Speed\n\nlegacy tables\n\n' + report.ROOFLINE_BEGIN)
    assert text.count(report.ROOFLINE_BEGIN) == text.count(report.ROOFLINE_END) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ['benchmark.md']


def test_run_roofline_on_a_tiny_suite():
    """The whole roofline path on one tiny model from a config given as data (seconds): rows
    with FLOPs, fractions of the run's peak, memory, the op-class profile."""
    with pytest.raises(ValueError, match='needs `config`'):
        suites.custom_suite({'mine': dict(label='x')})
    suite = suites.custom_suite({'dwnet': dict(config='configs/classification/'
                                                      'dwnet-tiny_8xb128_in1k.py')})
    assert suite['models']['dwnet']['label'] == 'dwnet'
    assert suite['roofline']['models'] == ['dwnet']
    suite['roofline'].update(
        memory=[], throughput=[], profile=['infer'],
        settings=dict(infer=dict(batch=1, size=[64, 64], mode='infer', part='model'),
                      det=dict(batch=1, size=[64, 96], mode='infer', part='det'),
                      train=dict(batch=2, size=[64, 64], mode='train', part='model')),
        targets=dict(infer=dict(dwnet=0.99)))
    arch = dict(embed_dims=8, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8])
    res = roofline.run_roofline(suite, rounds=1, warmup=0, arch=arch, quick_peak=True,
                                log=lambda msg: None)
    rows = res['rows']['dwnet']
    assert set(rows) == {'infer', 'det', 'train'}
    for name, r in rows.items():
        assert r['gflop'] > 0 and r['fraction'] == pytest.approx(
            r['gflop'] / r['best_s'] / res['peak']['peak'])
    assert rows['train']['gflop'] == pytest.approx(6 * rows['infer']['macs'] * 2 / 1e9)
    assert rows['infer']['peak_mib'] > 0 and rows['train']['peak_mib'] is None
    assert res['peak']['peak'] == max(p['peak'] for p in res['peaks'])
    prof = res['profiles']['dwnet']['infer']
    assert prof['ms']['dense'] > 0 and prof['ms']['aggregation'] > 0  # 1x1 and 7x7 DW convs
    text = '\n'.join(report.roofline_lines(res, suite))
    assert '>= 99% | **miss** |' in text or '>= 99% | met |' in text
