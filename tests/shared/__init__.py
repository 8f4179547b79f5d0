"""Tests of `shared/`."""
