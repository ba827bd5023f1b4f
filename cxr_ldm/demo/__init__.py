"""The end-to-end demo on phantom data: tiny pretrained pipeline, fine-tune, evaluate, augmentation experiment."""
