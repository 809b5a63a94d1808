"""Networks: pure ``torch.nn.Module`` classes, no file or DICOM I/O."""

from kernelconv.nets.generator import Generator, GeneratorConfig

__all__ = ["Generator", "GeneratorConfig"]
