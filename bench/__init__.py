"""Benchmarks: seeded data, one module per scenario, JSON results, ratios within one run."""
