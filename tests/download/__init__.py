"""Tests of rat7m.download: the downloader against local servers, its pure parts, safe unzip, fuzzed parsers."""
