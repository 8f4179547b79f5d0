"""Tests of the plain functions the CLI and the console share (cagnet/actions/)."""
