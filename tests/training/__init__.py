"""Tests of the training data: crops, shards, the PyTorch and TensorFlow datasets."""
