"""Developer tools (training, benchmarks); not part of the installed package."""
