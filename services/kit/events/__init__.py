"""Events: the NATS bus, the transactional outbox and the inbox consumer."""
