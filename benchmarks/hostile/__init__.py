"""Helpers of benchmarks/bench_hostile.py: served lab, probes, cells, checks (issue #12)."""
