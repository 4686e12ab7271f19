"""Stand-ins for hardware used by the importer tests and benchmarks (loopback only, bounded)."""
