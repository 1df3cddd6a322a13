"""The test suite (tiers: `make test-fast` runs the units, `make test` everything; README.md)."""
