"""The node's part in the network's life: joining, governance proposals, witnessing the register."""
