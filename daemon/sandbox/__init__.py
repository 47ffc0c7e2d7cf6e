"""A small simulated world on loopback for `opsmedic demo`, the tests and the benchmarks."""
