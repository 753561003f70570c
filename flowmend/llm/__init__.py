"""Batch-first model client, its backends and the local model store."""
