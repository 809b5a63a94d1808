"""kernelconv: convert CT images between reconstruction kernels (GGCL, Choi et al., MICCAI 2023)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
