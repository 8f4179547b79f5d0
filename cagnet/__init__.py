"""The `cagnet` command: composes the node's and the coordinator's command lines, and the demo.
It is the only package that imports both `node` and `coordinator`; they never import each other."""
