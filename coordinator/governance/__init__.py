"""Governance on the coordinator: proposals in the network folder and the Governance service."""
