"""Tests of rat7m.demo: the synthetic dataset, the local Figshare server, the demo pipeline and the notebook."""
