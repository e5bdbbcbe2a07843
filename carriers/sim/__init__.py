"""``smsgw sim-carrier``: a fake carrier for development, tests and benchmarks."""
