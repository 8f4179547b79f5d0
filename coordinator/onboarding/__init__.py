"""Onboarding over the wire: invites, join requests and the onboarding port's service."""
