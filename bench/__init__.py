"""Benchmarks for ``make bench``: each row is a ratio of ours against an anchor measured in the same run."""
