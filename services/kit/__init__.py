"""The service kit: what every expense-mesh service needs, written once."""
