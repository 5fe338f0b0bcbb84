"""Tests of rat7m.render: overlays, videos, the report and the palette."""
