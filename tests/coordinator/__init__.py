"""Tests of `coordinator/`."""
