from cagnet.cli import main

main()
