"""Tests of `node/`."""
