"""Physics-based simulator of paired multi-kernel CT (an extension beyond the paper).

phantom.py draws anatomy on a fine grid; scanner.py projects it (parallel beam), adds one noise
realisation per slice, and reconstructs it by FBP once per kernel; kernels.py is the declarative
kernel table; series.py writes the paired DICOM series and the ground truth.
"""
