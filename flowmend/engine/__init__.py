"""The workflow model, patches, the operator base class and registry, and the inner loop."""
