"""Benchmarks of the operator against the API server floor (``make bench``)."""
