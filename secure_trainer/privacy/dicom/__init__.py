"""DICOM import: detection, PS3.15 Annex E de-identification, pixel rendering (decoder side)."""
