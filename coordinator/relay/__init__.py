"""The relay: the coordinator's side of nodes that only dial out (docs/protocol.md, "The relay")."""
