"""Seeded synthetic data for one authority: supply, client records and outcomes."""
