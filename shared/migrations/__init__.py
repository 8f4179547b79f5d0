"""Migrations of the schemas shared/ owns: the audit log's (audit/)."""
