"""Tests of the browser console that need no network (cagnet/console/)."""
