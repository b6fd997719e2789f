"""gRPC plumbing: server bootstrap, the interceptor, status mapping, client channels."""
