"""Tests of frame extraction: extract, video, barcode, and extraction on a real SLURM cluster."""
