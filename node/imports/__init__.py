"""Loading an authority's own records into its node: supply (providers, services, contracts)
and client records, each import all-or-nothing."""
