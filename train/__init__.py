"""Training: datasets, augmentation, the loop (DDP), fine-tuning, pre-training, metrics."""
