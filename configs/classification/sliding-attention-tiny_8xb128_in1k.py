# Table 5: sliding-window attention -- each position attends to its own 7x7 neighbourhood
# (instead of Swin's shifted non-overlapping windows), LN blocks as Swin.
_base_ = ['./swin-tiny_8xb128_in1k.py']

model = dict(backbone=dict(type='SlidingWindowNet'))
