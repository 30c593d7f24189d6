"""PyTorch training tree for DMCF-SIDE: network, data, training, evaluation, export, engine build."""
