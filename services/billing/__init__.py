"""Billing: budgets, bills and subscriptions, alerts (issue 15)."""
