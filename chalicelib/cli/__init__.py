"""Command-line tools: run each as ``python -m chalicelib.cli.<name>``."""
