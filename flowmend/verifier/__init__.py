"""Deployable feedback: visible checks, structured verdicts, scores, and gamma/kappa."""
