"""The lake and the warehouse: table schemas and typed rows, the store, Parquet files, the ledger, the mirror,
the DuckDB views."""
