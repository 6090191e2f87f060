"""Benchmarks (``make bench``): speed goals live here, never in unit tests."""
