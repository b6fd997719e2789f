"""em, the expense-mesh command line (README.md)."""
