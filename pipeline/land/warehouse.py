"""The DuckDB warehouse: views and macros over the committed lake, created from sql/*.sql.

What an analyst reads is exactly what the manifests committed: each lake view
reads the list of files the manifests name (never a glob), so the files of a
run in progress or of a crashed one, or a stray copy of a file, are invisible.
The manifest chain is checked (sequence and links) before it is trusted.

The warehouse moves with its data: a local lake is named by paths relative to
the warehouse's folder (`lake/findings/run_date=.../x.parquet`), resolved
through DuckDB's `file_search_path`, which Assay's connections set to that
folder (a plain DuckDB client opens it from there, or sets it: docs/operations.md).
So a copied or moved data folder reads its own lake. An S3 lake is named by
its s3:// URLs; Assay's connections read them through pyarrow (pipeline/land/store.py).

Building never needs a lock an analyst holds: the new catalog is written beside
the old one and renamed over it (an open session keeps reading the old file
until it reopens), and nothing is rebuilt when the catalog already describes
the lake's newest commit with the same SQL. The catalog records what it
describes (table `assay_catalog`); opening it checks that against the lake and
says what to run when they differ; views built from another version's SQL are
rebuilt on opening. The file is written in DuckDB's v1.4.0
storage format (`STORAGE_VERSION`), readable by DuckDB clients from 1.4 on.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from string import Template

import duckdb

from pipeline.core.errors import AssayError
from pipeline.core.hashing import sha256_text
from pipeline.core.settings import Settings
from pipeline.land.lake import FileEntry, Lake
from pipeline.land.ledger import Ledger, Manifest, chain_problems
from pipeline.land.sandbox import restrict
from pipeline.land.store import MANIFEST_DIR, LakeStore, as_store, open_store
from pipeline.land.tables import SCHEMAS, TABLES

logger = logging.getLogger(__name__)

STORAGE_VERSION = "v1.4.0"
CATALOG = "assay_catalog"


class WarehouseError(AssayError):
    """The warehouse cannot be built or does not describe this lake; the message says what to run."""


def sql_dir() -> Path:
    """sql/ in a source checkout, or its copy inside the installed package."""
    package = Path(__file__).resolve().parent.parent  # pipeline/
    for candidate in (package.parent / "sql", package / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sql/ folder of Assay is missing from this installation")


def sql_files() -> list[Path]:
    return sorted(sql_dir().glob("*.sql"))


def sql_sha256() -> str:
    """SHA-256 of the view definitions (every sql/*.sql, in order)."""
    return sha256_text("\x00".join(f"{p.name}\x00{p.read_text(encoding='utf-8')}" for p in sql_files()))


def ensure_every_table_has_a_file(lake: Lake, run_id: str, run_date: date) -> list[FileEntry]:
    """A view over no file has no columns; an empty file with the table's schema gives it them."""
    return [
        lake.write(table, [], run_id=run_id, part="schema", run_date=run_date)
        for table in TABLES
        if not lake.has_files(table)
    ]


@dataclass(frozen=True)
class CatalogState:
    """What a catalog describes: the lake (as its views name it), its newest commit, the SQL it was built from."""

    lake: str
    head_sequence: int
    head_sha256: str
    sql_sha256: str


def lake_name(folder: Path, store: LakeStore) -> str:
    """How the views name the lake: relative to the warehouse's folder when it lies inside it."""
    if not store.local:
        return store.url
    try:
        return Path(store.root).relative_to(folder.resolve()).as_posix()
    except ValueError:
        return store.root


def _quoted(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


# DuckDB's name of each Arrow type the tables use (for a column older files lack).
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "large_string": "VARCHAR",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "double": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "list<item: int32>": "INTEGER[]",
    "list<item: string>": "VARCHAR[]",
}


def _reader(con: duckdb.DuckDBPyConnection, lake: str, table: str, paths: list[str]) -> str:
    """A read of exactly these files, with every column of the table's current schema.

    Files written by an older version of Assay may lack a column added since: it reads as null.
    """
    if not paths:
        raise WarehouseError(f"the lake has no committed file of table {table}: run `assay run` once")
    listed = ", ".join(_quoted(f"{lake}/{p}") for p in sorted(paths))
    read = f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true)"
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()}
    missing = [field for field in SCHEMAS.get(table, []) if field.name not in present]
    if not missing:
        return read
    added = ", ".join(f"CAST(NULL AS {_DUCKDB_TYPES[str(f.type)]}) AS {f.name}" for f in missing)
    return f"(SELECT *, {added} FROM {read})"


def _substitutions(con: duckdb.DuckDBPyConnection, lake: str, manifests: list[Manifest]) -> dict[str, str]:
    files: dict[str, list[str]] = {table: [] for table in TABLES}
    for manifest in manifests:
        for entry in manifest.files:
            files.setdefault(entry.table, []).append(entry.path)
    readers = {table: _reader(con, lake, table, paths) for table, paths in files.items()}
    listed = ", ".join(_quoted(f"{lake}/{m.relative}") for m in manifests)
    readers["manifests"] = f"read_json([{listed}], filename = true, format = 'auto')"
    return readers


def current_state(warehouse_path: Path) -> CatalogState | None:
    """What the warehouse at this path describes (None: no warehouse, or one from before catalogs)."""
    if not warehouse_path.exists():
        return None
    try:
        with duckdb.connect(str(warehouse_path), read_only=True) as con:
            row = con.execute(f"SELECT value FROM {CATALOG} WHERE key = 'state'").fetchone()
    except duckdb.Error:
        return None
    return CatalogState(**json.loads(row[0])) if row else None


def build(warehouse_path: Path, lake: LakeStore | Path, seen_from: Path | None = None) -> bool:
    """Make the warehouse describe the lake's committed files; False when it already did (nothing written).

    `seen_from`: the folder the views name the lake from (default: the warehouse's own).
    """
    store = as_store(lake)
    folder = seen_from or warehouse_path.parent
    manifests = Ledger(store).manifests()
    if not manifests:
        raise WarehouseError(f"the lake at {store.url} has no commit yet: run `assay run` first")
    problems = chain_problems(manifests)
    if problems:
        raise WarehouseError(f"the lake's manifest chain is broken ({problems[0]}): run `assay verify`")
    head = manifests[-1]
    state = CatalogState(lake_name(folder, store), head.sequence, head.sha256, sql_sha256())
    if current_state(warehouse_path) == state:
        return False
    warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    building = warehouse_path.with_name(f".{warehouse_path.name}.{uuid.uuid4().hex[:8]}.building")
    try:
        config = {"storage_compatibility_version": STORAGE_VERSION, "file_search_path": str(folder)}
        with store.connect(str(building), config=config) as con:
            substitutions = _substitutions(con, state.lake, manifests)
            for path in sql_files():
                con.execute(Template(path.read_text(encoding="utf-8")).substitute(substitutions))
            con.execute(f"CREATE TABLE {CATALOG} (key VARCHAR PRIMARY KEY, value VARCHAR)")
            facts = {
                "state": json.dumps(asdict(state)),
                "built_from": store.url,  # where the lake was when this catalog was built
                "manifests": str(len(manifests)),
                "built_at": datetime.now(UTC).isoformat(),
                "storage_version": STORAGE_VERSION,
            }
            con.executemany(f"INSERT INTO {CATALOG} VALUES (?, ?)", list(facts.items()))
            con.execute("CHECKPOINT")  # everything into the file itself, or an error (a full disk)
        wal = building.with_name(building.name + ".wal")
        if wal.exists():  # the checkpoint on closing failed: the file alone is not the catalog
            raise WarehouseError(f"the catalog could not be written completely to {building.parent}")
        os.replace(building, warehouse_path)  # an analyst's open session keeps the old file until it reopens
    finally:
        building.unlink(missing_ok=True)
        building.with_name(building.name + ".wal").unlink(missing_ok=True)
    _sync_folder(warehouse_path.parent)
    return True


def refresh(warehouse_path: Path, lake: LakeStore | Path) -> str | None:
    """`build` after a commit: what went wrong comes back as a warning, never as an error.

    The data is committed whatever happens to the catalog; the next commit, or `assay warehouse`,
    builds it again.
    """
    try:
        build(warehouse_path, lake)
    except Exception as exc:
        logger.exception("the warehouse was not rebuilt")
        return f"the warehouse was not rebuilt ({type(exc).__name__}: {exc}); run `assay warehouse`"
    return None


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check(con: duckdb.DuckDBPyConnection, store: LakeStore, warehouse_path: Path) -> str | None:
    """Does the catalog describe this lake? None if so; a warning if it is behind; WarehouseError if not this lake."""
    row = con.execute(f"SELECT value FROM {CATALOG} WHERE key = 'state'").fetchone()
    if row is None:
        raise WarehouseError(f"{warehouse_path} holds no catalog: run `assay warehouse` to rebuild it")
    state = CatalogState(**json.loads(row[0]))
    ledger = Ledger(store)
    names = sorted(r for r in store.files(MANIFEST_DIR) if r.endswith(".json"))
    same = ledger.named(state.head_sequence)
    if same is None or ledger.read(same).sha256 != state.head_sha256:
        raise WarehouseError(
            f"{warehouse_path} describes another lake (its newest commit, number {state.head_sequence}, is not in "
            f"{store.url}): run `assay warehouse` to rebuild it for this data folder"
        )
    behind = len(names) - names.index(same) - 1
    if behind:
        return f"the warehouse is {behind} commit(s) behind the lake: run `assay warehouse` to see them"
    return None


def connect_read_only(warehouse_path: Path, lake: LakeStore | Path | None = None) -> duckdb.DuckDBPyConnection:
    """The warehouse, read-only, its relative paths resolved from its folder and checked against the lake.

    The connection may read the lake and nothing else (pipeline/land/sandbox.py): give it analysts' SQL
    only through `sandbox.check_select`.
    """
    if not warehouse_path.exists():
        raise FileNotFoundError(f"no warehouse at {warehouse_path}: run `assay run` first")
    store = as_store(lake) if lake is not None else as_store(warehouse_path.parent / "lake")
    state = current_state(warehouse_path)
    if state is not None and state.sql_sha256 != sql_sha256():  # views of another version of Assay: renew them
        problem = refresh(warehouse_path, store)
        if problem:
            logger.warning("the views were built by another version of Assay and could not be rebuilt: %s", problem)
    con = store.connect(str(warehouse_path), read_only=True, config={"file_search_path": str(warehouse_path.parent)})
    try:
        warning = check(con, store, warehouse_path)
    except BaseException:
        con.close()
        raise
    if warning:
        logger.warning("%s", warning)
    return restrict(con, store, lake_name(warehouse_path.parent, store))


def read_only(settings: Settings) -> duckdb.DuckDBPyConnection:
    """The warehouse of these settings, read-only, able to read their lake wherever it is."""
    return connect_read_only(settings.warehouse_path, open_store(settings))
