"""Developer fixtures: tiny random models and synthetic datasets (never used in production runs)."""
