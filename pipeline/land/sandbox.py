"""What an analyst's connection may do: read the lake's views, nothing else.

DuckDB's read-only mode protects only the warehouse file; its SQL can still read
and write files anywhere (`COPY … TO`, `read_csv('/etc/passwd')`, `glob('/root/**')`),
attach databases, change settings, install extensions. So every connection Assay
hands an analyst (`assay query`, `export`, `show`, the report) is restricted:

- `check_select`: one statement, and a `SELECT` (DuckDB's own parser says so);
  `COPY`, `EXPORT`, `ATTACH`, `PRAGMA`, `SET`, `CALL`, `INSTALL`, a second statement
  behind the first: refused with a message before anything runs;
- `restrict`: files may be read only inside the lake (`allowed_directories` with
  `enable_external_access = false`), no extension is installed or loaded, and the
  configuration is then locked, so no statement can lift these limits;
- over an S3 lake the connection reads through a filesystem that refuses every
  write, so even a write that got past the parser could not use the run's credentials.
"""

from __future__ import annotations

import duckdb

from pipeline.core.errors import AssayError
from pipeline.land.store import LakeStore


class QueryRefused(AssayError):
    """A query an analyst's connection does not run; the message says why."""


def check_select(sql: str) -> str:
    """`sql` if it is exactly one SELECT statement; QueryRefused otherwise."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the query does not parse: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"one statement at a time, please (this is {len(statements)})")
    kind = str(statements[0].type).removeprefix("StatementType.")
    if kind != "SELECT":
        raise QueryRefused(f"only SELECT queries read the warehouse ({kind} statements are refused)")
    return sql


def restrict(
    con: duckdb.DuckDBPyConnection, store: LakeStore, as_named: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Limit the connection to reading the lake; lock its configuration.

    `as_named` is how the views name a local lake (relative to the warehouse's folder): DuckDB checks
    a relative path as written, before `file_search_path` resolves it (`..` is refused either way).
    """
    roots = [(store.root if store.local else store.url).rstrip("/") + "/"]
    if as_named and as_named.rstrip("/") + "/" not in roots:
        roots.append(as_named.rstrip("/") + "/")
    listed = ", ".join("'" + root.replace("'", "''") + "'" for root in roots)
    con.execute(f"SET allowed_directories = [{listed}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET allow_community_extensions = false")
    con.execute("SET lock_configuration = true")
    return con
