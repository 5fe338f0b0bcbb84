"""Tests of the evaluation modules: metrics, metrics2d, predictions, triangulate, evaluate and the scoring command."""
