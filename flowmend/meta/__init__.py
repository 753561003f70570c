"""The offline outer loop: the only place besides bench/ that may read hidden tests."""
