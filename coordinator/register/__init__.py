"""The accreditation register on the coordinator: its rules, its append-only store and its service."""
