"""Isolated, supervised execution of untrusted code: workflows and model-written programs."""
