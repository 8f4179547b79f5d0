"""The cagnet coordinator: runs joint queries across member nodes, verifies and combines their
signed partial aggregates, and never receives a raw record."""
