"""Tests of the command-line layer: the shared conventions, the command contract, Ctrl-C, hints, doctor."""
