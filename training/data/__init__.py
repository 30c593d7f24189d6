"""MS2 data loading for training and evaluation (real MS2 or the synthetic generator's output)."""
from .augment import AugmentConfig
from .ms2_dataset import DROPOUT_MODES, MS2Dataset, add_blanked_copies, collate

__all__ = ["AugmentConfig", "DROPOUT_MODES", "MS2Dataset", "add_blanked_copies", "collate"]
