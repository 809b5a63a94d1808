"""The PACS front door: a DICOM Storage SCP that spools, waits for series to be stable, converts
them with the same pipeline as `convert`, and stores or forwards the derived series."""
