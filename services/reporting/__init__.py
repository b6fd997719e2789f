"""Reporting: weekly, monthly and yearly reports from rollups fed by ledger events."""
