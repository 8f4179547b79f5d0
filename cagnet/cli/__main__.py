"""`python -m cagnet.cli`: the same command line as `cagnet`."""

from cagnet.cli import main

main()
