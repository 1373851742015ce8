# ADE20K test set -> PNG predictions for the scene parsing benchmark server.
#
#   data/ade/release_test/testing/ADE_test_00000001.jpg ...   (release_test.zip, no labels)
#
# The test images are resized as the validation images (2048x512 keeping the ratio, whole-image
# inference), no annotations are loaded, and mmseg's IoUMetric(format_only=True) writes one
# <image name>.png per image into output_dir instead of computing mIoU. ADE20KDataset has
# reduce_zero_label=True, so IoUMetric adds 1 to the predicted train ids 0..149: the PNGs hold
# the benchmark's labels 1..150 (0 = "other" is never predicted), as the server expects.
# *_test-submission.py configs use these as `test_dataloader = {{_base_.submission_dataloader}}`.
submission_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='ADE20KDataset',
        data_root='data/ade/release_test',
        data_prefix=dict(img_path='testing'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(2048, 512), keep_ratio=True),
            dict(type='PackSegInputs'),
        ]))
submission_evaluator = dict(
    _delete_=True, type='IoUMetric', format_only=True, output_dir='work_dirs/ade20k_test_png')
