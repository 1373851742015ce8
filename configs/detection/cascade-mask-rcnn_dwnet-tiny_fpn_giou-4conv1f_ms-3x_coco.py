_base_ = [
    './_base_/models/cascade-mask-rcnn_dwnet_fpn_giou-4conv1f.py',
    './_base_/datasets/coco-instance_ms-crop.py',
    './_base_/schedules/adamw-3x.py', 'mmdet::_base_/default_runtime.py'
]
