"""A run from start to finish: its context, the shard plan, processing a shard, finishing, shared runs, and
`run_locally()`, the one run loop the flow, the tests and the benchmarks call."""
