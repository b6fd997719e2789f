"""Local servers speaking the protocols of the providers we cannot reach from tests (SMTP
relays, Twilio, Meta's Graph API) and a user's webhook receiver. Each checks credentials and
signatures the way the real one does, records what it was sent, and can be told to fail.
Every fake is an async context manager on a free loopback port; see README.md here."""
