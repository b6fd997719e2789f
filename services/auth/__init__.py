"""Auth: accounts, sessions, token issuance (RS256 access tokens, rotating refresh tokens)."""
