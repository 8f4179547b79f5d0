"""The node's gRPC side: the server, its servicer and the signed-envelope plumbing."""
