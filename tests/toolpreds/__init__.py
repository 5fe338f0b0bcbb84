"""Tests of rat7m.toolpreds: prediction files in the tools' own formats, round trips and hostile bytes."""
