"""Tamper-evident audit trail: every mutation and every read of patient data."""
