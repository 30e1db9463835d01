"""Looking at models and runs: summaries, benchmarks, comparisons, visualisation, search."""
