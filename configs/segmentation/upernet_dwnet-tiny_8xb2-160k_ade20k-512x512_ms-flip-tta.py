# Multi-scale (0.5-1.75 x 2048x512) + horizontal flip test-time augmentation of UPerNet + DWNet-T.
# Evaluation only: `python tools/test.py THIS_CONFIG CHECKPOINT` (the checkpoint of the
# single-scale config loads unchanged).  Any other model: copy this file and change `_base_`.
_base_ = './upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
test_dataloader = dict(dataset=dict(pipeline={{_base_.tta_pipeline}}))
