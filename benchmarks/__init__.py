"""Benchmarks: scripts that measure and estimate (they print ratios and estimates; no test asserts a time)."""
