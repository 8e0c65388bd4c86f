"""``python -m tools.train``: reproduce codelsr's shipped SPLADE code model from scratch."""
