"""``make bench``: serving overhead, dynamic batching, CPU efficiency, and Triton against a research script."""
