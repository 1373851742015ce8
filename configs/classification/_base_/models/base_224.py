# Base classifier of the paper's Table 2: the tiny classifier with the base arch, drop-path 0.5.
_base_ = './tiny_224.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.5),
    head=dict(in_channels=1024))
