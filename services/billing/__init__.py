"""The billing service: budgets, bills and subscriptions, and alerts."""
