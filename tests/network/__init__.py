"""Live-network suites: real servers on port 0 with mTLS, and the command line run as processes."""
