"""GGCL training (Choi et al. 2023): data cache, losses, the training loop, export."""
