"""DICOM building blocks: series discovery, pixel decode/encode, derived datasets, safe paths.

Nothing in this package imports torch.
"""
