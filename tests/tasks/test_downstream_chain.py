"""The pretrain -> fine-tune chain of ``make demo``, shortened: classification on digits, then
Cascade Mask R-CNN and UPerNet on digit scenes, each started from the classification checkpoint.

The shortened run (``tests/digits_run.py``, shared with test_demo.py) must clear thresholds that
an untrained model (the same configs, backbone from the classification checkpoint, heads as
initialised) does not: the test measures that model too, so each threshold is shown to be able
to fail.
"""
import json
import re
import sys
from pathlib import Path

import pytest

from digits_run import ROOT
from script_loading import load_script

sys.path.insert(0, str(ROOT / 'demo'))
import downstream  # noqa: E402

from mmdwnet.analysis import transfer_study as study  # noqa: E402

# What the shortened chain must reach (mAP 0-1 as mmdet reports it, mIoU in % as mmseg does).
# Measured for the shortened run (24 val scenes, 2026-12-05): bbox mAP_50 0.265, segm mAP_50
# 0.279 after 320 detection steps (240 steps: 0.086 / 0.096), mIoU 11.58 after 1000
# segmentation steps; on the 256 training scenes of 2026-12-06 (and the segmentation recipe of
# then): bbox / segm mAP_50 0.192 / 0.171, mIoU 23.0. An untrained model (heads as
# initialised) scores 0.000 to 0.017 mAP_50
# (its random boxes, ranked by near-equal scores, hit a digit now and then; which ones depends
# on the CPU's rounding) and 0.07 mIoU; a model that paints everything background scores about
# 8.4 mIoU (background IoU 92 of 11 classes), so 10 requires digits to be named.
THRESHOLDS = {'det': {'coco/bbox_mAP_50': 0.10, 'coco/segm_mAP_50': 0.10},
              'seg': {'mIoU': 10.}}


@pytest.fixture(scope='module')
def demo(digits_demo):
    return digits_demo


def _runs(results):
    return {run['task']: run for run in results['downstream']}


def _options(strings):
    """['a.b=v', ...] (--cfg-options syntax, as downstream builds them) -> a dict to merge."""
    from mmengine.config import DictAction
    out = {}
    for s in strings:
        key, value = s.split('=', 1)
        out[key] = DictAction._parse_iterable(value)
    return out


def untrained_metrics(task, init, scenes_root, work_dir):
    """tools/test.py's numbers for the config's model before fine-tuning: backbone loaded from
    the classification checkpoint ``init`` by its init_cfg, everything else as initialised."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(downstream.CONFIGS[task]['DWNet']))
    cfg.merge_from_dict(_options(downstream.data_options(task, scenes_root) +
                                 downstream.init_options(init)))
    cfg.work_dir = str(work_dir)
    cfg.load_from = None
    runner = Runner.from_cfg(cfg)
    runner.model.init_weights()
    return runner.test()


@pytest.mark.slow
def test_chain_fine_tunes_from_the_classification_checkpoint(demo):
    work_dir, results, out = demo
    assert results['short'] and set(_runs(results)) == {'det', 'seg'}
    # the configs' pretraining: the digits classifier trained on digits repainted on photos
    pre = results['pretraining']['DWNet']
    assert pre['config'] == ('configs/classification/digits/'
                             'dwnet-nano_1xb64-30e_digits-on-photos-32px.py')
    assert pre['top1'] > 30  # 10 classes: well above chance on the plain validation digits
    cls_ckpt = pre['checkpoint']
    assert cls_ckpt != results['models']['DWNet']['checkpoint']
    for task, run in _runs(results).items():
        assert run['init'] == cls_ckpt and Path(run['checkpoint']).is_file()
        assert run['config'] == str(downstream.CONFIGS[task]['DWNet'].relative_to(ROOT))
        # the backbone was loaded from that file by init_cfg (tools/train.py's log)
        log = next(Path(run['checkpoint']).parent.glob('*/*.log')).read_text()
        assert f'Loads checkpoint by local backend from path: {Path(cls_ckpt).resolve()}' in log
        for metric, threshold in THRESHOLDS[task].items():
            assert run['metrics'][metric] >= threshold, (task, run['metrics'])
    for loss in ('loss_rpn_cls', 'decode.loss_ce'):  # mmengine's progress, det and seg
        assert re.search(rf'Iter\(train\).*{re.escape(loss)}', out), loss
    assert 'coco/bbox_mAP' in out and 'mIoU' in out


@pytest.mark.slow
def test_thresholds_fail_an_untrained_model(demo, tmp_path):
    _, results, _ = demo
    cls_ckpt = results['pretraining']['DWNet']['checkpoint']
    for task in ('det', 'seg'):
        metrics = untrained_metrics(task, cls_ckpt, results['scenes_root'], tmp_path / task)
        for metric, threshold in THRESHOLDS[task].items():
            assert metrics[metric] < threshold, (task, metric, metrics[metric])
            assert _runs(results)[task]['metrics'][metric] > metrics[metric]


@pytest.mark.slow
def test_results_table_and_pictures(demo):
    from PIL import Image
    work_dir, results, _ = demo
    table = (work_dir / 'results.md').read_text()
    for task, run in _runs(results).items():
        row = next(line for line in table.splitlines()
                   if line.startswith(f'| {downstream.TASK_NAMES[task]} | DWNet |'))
        for metric in downstream.METRICS[task]:
            value = run['metrics'][metric]
            assert (f'{value:.3f}' if metric.startswith('coco') else f'{value:.2f}') in row
        vis = list((Path(run['checkpoint']).parent / 'vis').iterdir())
        assert len(vis) == 4
    with Image.open(work_dir / 'downstream.png') as img:
        assert img.size[0] > 600 and img.size[1] > 400
    assert json.loads((work_dir / 'results.json').read_text())['seconds'] > 0
    assert re.search(r'Whole demo: \d+ s wall-clock', table)


def test_missing_classification_checkpoint_is_a_clear_error(tmp_path):
    """Neither the demo nor the configs ever go on with a random backbone."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    missing = tmp_path / 'work_dirs' / 'epoch_10.pth'
    with pytest.raises(FileNotFoundError, match='classification checkpoint .*epoch_10.pth does '
                       'not exist: the backbone would start from random weights'):
        downstream.init_options(missing)
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    import mmdwnet  # noqa: F401
    for task, registry, scope in (('det', DET_MODELS, 'mmdet'), ('seg', SEG_MODELS, 'mmseg')):
        for name, config in downstream.CONFIGS[task].items():
            cfg = Config.fromfile(str(config))
            assert cfg.model.backbone.init_cfg.checkpoint.startswith('work_dirs/demo/')
            assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
            cfg.model.backbone.init_cfg.checkpoint = str(missing)
            init_default_scope(scope)
            model = registry.build(cfg.model)
            with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
                model.init_weights()


def test_study_summary_and_report_section(tmp_path):
    """Mean and sample spread per (task, backbone, init); the report replaces only its section."""
    runs = [dict(task='seg', model='DWNet', init=init, seed=seed, train_seconds=10.,
                 metrics={'mIoU': value})
            for init, seed, value in (('pretrained', 0, 60.), ('pretrained', 1, 64.),
                                      ('scratch', 0, 30.))]
    summary = study.summarise(runs)
    mean, spread, n = summary[('seg', 'DWNet', 'pretrained')]['mIoU']
    assert (mean, n) == (62., 2) and spread == pytest.approx(2 ** 1.5)
    assert summary[('seg', 'DWNet', 'scratch')]['mIoU'] == (30., 0., 1)
    args = study.parse_args(['--short', '--seeds', '0', '1'])
    assert args.scenes_root == 'data/digit_scenes-short'
    doc = tmp_path / 'downstream.md'
    doc.write_text(f'# Title\n\nbefore\n\n{study.BEGIN}\nold\n{study.END}\n\nafter\n')
    study.write_section(doc, study.report(summary, args, 'downstream.png'))
    text = doc.read_text()
    assert 'old' not in text and text.startswith('# Title\n\nbefore') and text.endswith('after\n')
    assert '| UPerNet | DWNet | pretrained | mIoU | 62.000 | 2.828 | 2 | 10 | this study |' in text
    # a later study of detection alone keeps the segmentation rows, marked earlier; its own
    # rows replace those it ran again
    earlier = study.earlier_summary(doc, args)
    assert earlier.keys() == summary.keys()
    assert earlier[('seg', 'DWNet', 'pretrained')] == dict(mIoU=(62., 2.828, 2), seconds=10.)
    det = study.summarise([dict(task='det', model='Swin', init='scratch', seed=0,
                                train_seconds=5., metrics={'coco/bbox_mAP': .5,
                                                           'coco/segm_mAP': .4}),
                           dict(task='seg', model='DWNet', init='scratch', seed=0,
                                train_seconds=5., metrics={'mIoU': 40.})])
    study.write_section(doc, study.report(det, args, 'downstream.png',
                                          study.earlier_summary(doc, args)))
    text = doc.read_text()
    assert '| UPerNet | DWNet | pretrained | mIoU | 62.000 | 2.828 | 2 | 10 | earlier study |' \
        in text
    assert '| UPerNet | DWNet | scratch | mIoU | 40.000 | 0.000 | 1 | 5 | this study |' in text
    assert '30.000' not in text
    assert '| Cascade Mask R-CNN | Swin | scratch | coco/segm_mAP | 0.400 | 0.000 | 1 | 5 | ' \
        'this study |' in text
    # rows measured on another schedule (here: the full one) are not kept
    assert study.earlier_summary(doc, study.parse_args(['--seeds', '0'])) == {}
    study.plot(summary, tmp_path / 'plot.png')
    assert (tmp_path / 'plot.png').stat().st_size > 1000
    with pytest.raises(SystemExit):
        study.parse_args(['--seeds', '0', '0'])


def test_study_swin_control_is_the_toolbox_swin(tmp_path):
    from mmengine.config import Config
    for task in ('det', 'seg'):
        base = downstream.CONFIGS[task]['DWNet']
        cfg = Config.fromfile(str(study.swin_config(task, tmp_path, base)))
        backbone = cfg.model.backbone
        assert backbone.type == 'SwinTransformer' and backbone.init_cfg is None
        assert 'arch' not in backbone and 'mixer' not in backbone  # DWNet keys dropped
        assert cfg.model.neck.in_channels == [32, 64, 128, 256] if task == 'det' else \
            cfg.model.decode_head.in_channels == [32, 64, 128, 256]


def _tools(tmp_path, **scripts):
    (tmp_path / 'tools').mkdir()
    for name, body in scripts.items():
        (tmp_path / 'tools' / f'{name}.py').write_text(body)


def test_runs_side_by_side_keep_order_and_tag_their_lines(tmp_path, monkeypatch, capsys):
    """``in_parallel`` returns results in call order and each tool line carries its tag."""
    _tools(tmp_path, echo='import sys, time\ntime.sleep(float(sys.argv[1]))\n'
           'print("done", sys.argv[1])\n')
    monkeypatch.setattr(downstream, 'ROOT', tmp_path)

    def call(seconds, tag):
        downstream.run_tool('echo.py', seconds, tag=tag)
        return tag
    assert downstream.in_parallel([lambda: call(1.0, 'slow'), lambda: call(0.1, 'fast')],
                                  2) == ['slow', 'fast']
    out = capsys.readouterr().out
    assert '[slow] done 1.0' in out and '[fast] done 0.1' in out
    assert out.index('[fast] done') < out.index('[slow] done')  # they did overlap


def test_a_failed_run_stops_the_runs_beside_it(tmp_path, monkeypatch):
    """One run fails: the error says which, and the run still going is terminated (not
    left to finish its minutes of training)."""
    import time
    _tools(tmp_path, sleep='import time\ntime.sleep(120)\n',
           fail='import time\ntime.sleep(0.5)\nraise SystemExit(3)\n')
    monkeypatch.setattr(downstream, 'ROOT', tmp_path)
    start = time.time()
    with pytest.raises(SystemExit, match=r'fail\.py failed \(exit code 3\).*\[b\]'):
        downstream.in_parallel([lambda: downstream.run_tool('sleep.py', tag='a'),
                                lambda: downstream.run_tool('fail.py', tag='b')], 2)
    assert time.time() - start < 60
    assert not downstream._RUNNING


def test_default_jobs_follow_the_threads_per_run(monkeypatch):
    monkeypatch.setattr(downstream.os, 'cpu_count', lambda: 2)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert downstream.default_jobs(4) == 2 and downstream.default_jobs(1) == 1
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert downstream.default_jobs(4) == 1


def _study_tool():
    return load_script('tools/analysis_tools/downstream_transfer.py')


def test_study_reuses_a_run_only_when_it_is_the_same_run(tmp_path, capsys):
    """``make study`` reuses the fine-tuning ``make demo`` did, and the runs an earlier study
    kept, only when resolved config, scenes and classification checkpoint are the same (their
    fingerprint): a changed seed, schedule, init, checkpoint, scene set or config trains again."""
    tool = _study_tool()
    scenes, other_scenes = tmp_path / 'scenes', tmp_path / 'other_scenes'
    for root, seed in ((scenes, 0), (other_scenes, 1)):
        root.mkdir()
        (root / downstream.STAMP).write_text(json.dumps(dict(seed=seed)))
    ckpt, other_ckpt = tmp_path / 'epoch_10.pth', tmp_path / 'other.pth'
    ckpt.write_bytes(b'classifier weights')
    other_ckpt.write_bytes(b'other weights')
    config = downstream.CONFIGS['seg']['DWNet']

    def fingerprint(config=config, scenes=scenes, ckpt=ckpt, short=False, seed=0):
        return downstream.run_fingerprint(
            config, downstream.run_options('seg', scenes, ckpt, short, seed), scenes, ckpt)

    # the demo passes no seed: the config's own seed 0 is the same run as the study's seed 0
    assert fingerprint(seed=None) == fingerprint()
    run = dict(task='seg', model='DWNet', config=str(config), init=str(ckpt),
               checkpoint='x.pth', metrics={'mIoU': 42.0}, train_seconds=1.0,
               fingerprint=fingerprint(seed=None))
    (tmp_path / 'results.json').write_text(json.dumps(dict(downstream=[run])))
    args = study.parse_args(['--cls-work-dir', str(tmp_path), '--scenes-root', str(scenes)])
    got = tool.from_demo('seg', 'DWNet', 0, args, fingerprint())
    assert got['metrics'] == {'mIoU': 42.0} and got['reused'].endswith('results.json')
    assert tool.from_demo('det', 'DWNet', 0, args, fingerprint()) is None  # not run
    edited = tmp_path / 'edited.py'
    edited.write_text(f"_base_ = ['{config}']\ntrain_cfg = dict(max_iters=10)\n")
    others = dict(seed=fingerprint(seed=1), short=fingerprint(short=True),
                  scratch=fingerprint(ckpt=None), checkpoint=fingerprint(ckpt=other_ckpt),
                  scenes=fingerprint(scenes=other_scenes), config=fingerprint(config=edited))
    for what, other in others.items():
        assert other != fingerprint(), what
        assert tool.from_demo('seg', 'DWNet', 0, args, other) is None, what
    # a run an earlier study kept: reused under its fingerprint, trained again under another
    kept = tmp_path / 'result.json'
    kept.write_text(json.dumps(dict(run, fingerprint=others['config'])))
    assert tool.kept_run(kept, others['config'], None)['metrics'] == {'mIoU': 42.0}
    assert tool.kept_run(kept, fingerprint(), None) is None
    assert 'training this run again' in capsys.readouterr().out


def test_fingerprints_taken_side_by_side_equal_the_sequential_ones(tmp_path):
    """``make study`` fingerprints its detection and segmentation runs from two threads at
    once; mmengine's Config.fromfile (its `mmdet::` bases ask pkg_resources) is not thread-safe,
    so without downstream's lock some of these threads fail with a TypeError."""
    configs = [downstream.CONFIGS[task]['DWNet'] for task in ('det', 'seg')] * 3

    def fingerprint(config):
        return downstream.run_fingerprint(config, [], tmp_path, None)
    # all at once, through the same thread pool the demo and the study use (a failure re-raises)
    got = downstream.in_parallel([lambda c=c: fingerprint(c) for c in configs], len(configs))
    expected = {config: fingerprint(config) for config in set(configs)}
    assert got == [expected[c] for c in configs]


def test_run_records_name_configs_relative_to_the_repository(tmp_path, monkeypatch):
    """The study's toolbox-Swin control writes its config under its work_dir, which a user
    gives relative to the current directory or outside the repository: recording the run
    crashed on the first (`relative_to` of a relative path) and would on the second."""
    config = downstream.CONFIGS['det']['DWNet']
    expected = str(config.relative_to(ROOT))
    monkeypatch.chdir(ROOT)
    assert downstream.repo_path(config) == expected
    assert downstream.repo_path(expected) == expected  # relative, as the study passes it
    monkeypatch.chdir(ROOT / 'configs')
    assert downstream.repo_path(Path('..') / expected) == expected
    outside = tmp_path / 'study' / 'det_swin-nano_digit-scenes.py'
    assert downstream.repo_path(outside) == str(outside.resolve())
    monkeypatch.chdir(tmp_path)
    assert downstream.repo_path('study/det_swin-nano_digit-scenes.py') == str(outside.resolve())
