"""What turns one planned run into predictions and a summary: the harness's own training loop
(loss, augmentation, checkpoints) and sliding-window inference, nnU-Net v2's own pipeline, and
predictions made elsewhere (``bench score``)."""
