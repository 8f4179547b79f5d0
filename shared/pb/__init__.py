"""Generated protobuf code (do not edit): regenerate with `python scripts/gen_proto.py`."""
