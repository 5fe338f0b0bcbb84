"""Tests of the camera model and the pixel convention: geometry, pixels, measured on the pictures."""
