"""Image-quality measurement: MTF and noise (QA), and conversion metrics."""
