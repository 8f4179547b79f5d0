"""Joint queries: the kinds, the fan-out to the nodes, the rounds, combining, the bundle and the
principal's client."""
