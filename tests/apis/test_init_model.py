"""Issue 20 item 1: ``mmdwnet.apis.init_model`` builds exactly what the toolboxes build.

For each task the model from ``init_model`` and the one from the toolbox's own builder
(``mmpretrain.get_model``, ``mmdet.apis.init_detector``, ``mmseg.apis.init_model``) run the
toolbox's inference (pipeline + data preprocessor + model) on the same real photograph
(scikit-image's sample data) and must give equal outputs; a classification test checks the
normalisation (mean/std, BGR -> RGB) against an independent computation.
"""
import pytest
import torch

from mmdwnet.apis import init_model
from mmdwnet.utils import safe_loading
from reference_models import narrow_config

IMAGENET_MEAN = torch.tensor([123.675, 116.28, 103.53])  # RGB order, the 1K configs' values
IMAGENET_STD = torch.tensor([58.395, 57.12, 57.375])


@pytest.fixture(scope='module')
def photo():
    """scikit-image's astronaut, (512, 512, 3) uint8, in mmcv's BGR channel order."""
    from skimage import data
    return data.astronaut()[..., ::-1].copy()


def test_classifier_normalises_its_input_like_the_config_says(reference_dir, repo_root, photo):
    cfg = narrow_config(repo_root, 'cls_dwnet_narrow')
    model = init_model(cfg, str(reference_dir / 'cls_dwnet_narrow.pth'))
    bgr = torch.from_numpy(photo[:224, 128:352]).permute(2, 0, 1)  # (3, 224, 224)
    data = model.data_preprocessor(dict(inputs=[bgr], data_samples=None), False)
    rgb = bgr.flip(0).float()
    expected = (rgb - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
    torch.testing.assert_close(data['inputs'][0], expected, rtol=0, atol=1e-5)
    # the preprocessed photograph really reaches the network: scores depend on normalisation
    with torch.no_grad():
        normalised = model(data['inputs'], mode='tensor')
        raw = model(rgb[None], mode='tensor')
    assert (normalised - raw).abs().max() > 1e-3


def test_classification_equals_mmpretrain_get_model(reference_dir, repo_root, photo):
    from mmpretrain import get_model
    from mmpretrain.apis import ImageClassificationInferencer
    cfg = narrow_config(repo_root, 'cls_swin_narrow')
    ckpt = str(reference_dir / 'cls_swin_narrow.pth')
    with safe_loading():  # where get_model reads an official classification file
        ours, theirs = init_model(cfg, ckpt), get_model(cfg, pretrained=ckpt)
    assert type(ours.data_preprocessor) is type(theirs.data_preprocessor)
    results = [ImageClassificationInferencer(m)(photo)[0]['pred_scores'] for m in (ours, theirs)]
    assert results[0].shape == (10, )
    assert (results[0] == results[1]).all()


def _detector_cfg(repo_root):
    cfg = narrow_config(repo_root, 'det_dwnet_narrow')
    cfg.test_dataloader.dataset.pipeline = [  # small test scale: seconds on a CPU
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(192, 160), keep_ratio=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    # boxes only, few proposals and every score kept: random heads still give boxes, in seconds
    cfg.model.roi_head.update(mask_roi_extractor=None, mask_head=None)
    cfg.model.test_cfg.rpn.update(nms_pre=50, max_per_img=10)
    cfg.model.test_cfg.rcnn.update(score_thr=0., max_per_img=5)
    return cfg


def test_detection_equals_mmdet_init_detector(reference_dir, repo_root, photo, tmp_path):
    from mmdet.apis import inference_detector, init_detector
    cfg = _detector_cfg(repo_root)
    theirs = init_detector(cfg, str(reference_dir / 'det_dwnet_narrow.pth'), device='cpu')
    ckpt = tmp_path / 'det.pth'
    torch.save(dict(meta=dict(dataset_meta=theirs.dataset_meta), state_dict=theirs.state_dict()),
               ckpt)
    ours = init_model(cfg, str(ckpt))
    assert ours.dataset_meta['classes'] == theirs.dataset_meta['classes']
    results = [inference_detector(m, photo[:256, 128:384]).pred_instances for m in (ours, theirs)]
    assert len(results[0]) > 0
    assert torch.equal(results[0].bboxes, results[1].bboxes)
    assert torch.equal(results[0].scores, results[1].scores)


def test_segmentation_equals_mmseg_init_model(reference_dir, repo_root, photo, tmp_path):
    from mmseg.apis import inference_model
    from mmseg.apis import init_model as init_segmentor
    cfg = narrow_config(repo_root, 'seg_dwnet_narrow')
    cfg.test_pipeline = [dict(type='LoadImageFromFile'),
                         dict(type='Resize', scale=(256, 128), keep_ratio=True),
                         dict(type='PackSegInputs')]
    theirs = init_segmentor(cfg, str(reference_dir / 'det_dwnet_narrow.pth'), device='cpu')
    ckpt = tmp_path / 'seg.pth'
    torch.save(dict(meta=dict(dataset_meta=theirs.dataset_meta), state_dict=theirs.state_dict()),
               ckpt)
    ours = init_model(cfg, str(ckpt))
    results = [inference_model(m, photo).seg_logits.data for m in (ours, theirs)]
    assert results[0].shape[0] == 150
    assert torch.equal(results[0], results[1])
