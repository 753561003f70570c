"""Datasets, splits, baselines, batch runs and reports; may read hidden tests."""
