# UPerNet + Swin-T (mmdwnet's SwinNet: the same macro architecture with shifted-window attention),
# ADE20K 512x512, 160k iterations; the paper's baseline.  LayerNorms throughout, also on the
# returned stages, as the official Swin segmentation backbone.
_base_ = './upernet_dwnet-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinNet',
        arch='tiny',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        out_norm_cfg=dict(type='LN'),
        pad_to_window=True,  # pad to the 7x7 window and mask, as Swin's mmseg backbone
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/swin-tiny_in1k.pth',
                      prefix='backbone.')))
