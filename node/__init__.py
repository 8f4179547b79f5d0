"""A cagnet node: one administering authority's records and the aggregates it may release.
Its store, CSV importer and synthetic data live here; it meets the coordinator only over gRPC."""
