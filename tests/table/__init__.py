"""Tests of the annotation table: matfile, table, table_build, model, the safe unpickler."""
