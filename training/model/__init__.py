"""DMCF-SIDE network (Kwon & Kim, JBE 2024): Swin encoder, DMCF fusion, Monodepth2 decoder."""
from .config import SWIN_SPECS, ModelConfig
from .net import DMCFSide, build_model, check_input_size, required_multiple
from .pretrained import checkpoint_filter_fn, load_pretrained_encoder

__all__ = [
    "SWIN_SPECS", "DMCFSide", "ModelConfig", "build_model", "check_input_size",
    "checkpoint_filter_fn", "load_pretrained_encoder", "required_multiple",
]
