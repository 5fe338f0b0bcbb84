"""Tests of rat7m.export: every format read back by its own library, the paths kept, the registry."""
