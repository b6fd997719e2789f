"""Ledger service: expenses and categories, exact money, idempotent writes, audit trail, events."""
