"""Who is calling: access-token verification, pushed session ends, auth's client."""
