"""Code common to cagnet nodes and the coordinator: the envelope, PKI, vocabulary, errors and serde.

Nothing in here imports `node` or `coordinator`; they meet only over gRPC.
"""

__version__ = "0.1.0"
