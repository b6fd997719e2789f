"""The launcher: `make up` (keys, migrations, NATS, every service, Envoy) and the
generators of the gateway and deployment files (Envoy, Kong, compose, k8s)."""
