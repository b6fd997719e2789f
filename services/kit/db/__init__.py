"""Storage: engine, reads, SQL helpers, migrations, idempotency, group commit, retention."""
