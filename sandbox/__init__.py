"""A real HTTP server that plays DRAP's partner API on loopback for tests, demo and benchmarks."""
