"""Training of the learned codecs: typed config, random-crop data, the one loop, checkpoints."""
from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
