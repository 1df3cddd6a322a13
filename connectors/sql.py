"""Documents kept as rows of a database table, through SQLAlchemy: the `sql` connector.

Each row is one document: its bytes in `content_column` (a blob, or text read as
UTF-8), its identity in `id_column`, its file name in `name_column` (or a type in
`mime_column`, from which a name is made) so the parser knows the format. The
version marker is `version_column` (an updated-at time or a row version) when
there is one: the run then reads only rows whose version changed, and a night's
listing fetches only the rows at or past the cursor (the largest version when the
last completed run started; `ListsChanges`). Without one, the listing reads and
hashes every row's content (as the file share does), every night.

Rows are listed in id order a page (`batch_size` rows) at a time, each page
asked for after the last id of the one before, so a table of millions is never
held in memory and a connection lost mid-listing costs one page, asked again.
Lost connections and timeouts (`timeout_s`, for connecting and each statement)
are transient (retried through pipeline/core/retry.py); anything else fails the
one document, or, while listing, the source.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import (
    URL,
    Connection,
    Engine,
    RowMapping,
    Select,
    column,
    create_engine,
    func,
    inspect,
    make_url,
    select,
    table,
)
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.expression import ColumnClause, ColumnElement, TableClause

from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef
from pipeline.core.errors import ConfigError, DocumentError, Reason, TransientError
from pipeline.core.retry import call_with_retry

T = TypeVar("T")


class SqlSourceConfig(BaseModel):
    """`connector = "sql"`: one table (or view) whose rows are documents."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["sql"] = "sql"
    url: SecretStr = Field(description="SQLAlchemy URL of the database (a secret: it may carry a password).")
    table: str = Field(description="The table or view whose rows are documents.")
    db_schema: str | None = Field(default=None, description="The table's schema (PostgreSQL), if not the default.")
    id_column: str = Field(default="id", description="A unique, stable id per row.")
    content_column: str = Field(default="content", description="The document's bytes (blob) or text.")
    name_column: str | None = Field(default=None, description="The document's file name (its extension: format).")
    mime_column: str | None = Field(default=None, description="The document's MIME type, when it has no name.")
    version_column: str | None = Field(default=None, description="Updated-at time or row version of each row.")
    batch_size: int = Field(default=1000, ge=1, description="Rows fetched per round trip while listing.")
    timeout_s: float = Field(
        default=60.0, gt=0, description="Connecting, and each statement, may take this long (PostgreSQL, MySQL)."
    )


class SqlConnector:
    """URIs are `sql://<source>/<table>/<id>/<file name>` (parts percent-encoded)."""

    def __init__(self, source_name: str, config: SqlSourceConfig, limits: SourceLimits | None = None) -> None:
        self.source_name = source_name
        self.config = config
        self.limits = limits or SourceLimits()
        try:
            url = make_url(config.url.get_secret_value())
            self.engine: Engine = create_engine(url, pool_pre_ping=True, connect_args=_timeouts(url, config.timeout_s))
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigError(f"source {source_name!r}: not a usable database URL ({type(exc).__name__})") from None
        self.rows: TableClause = table(config.table, schema=config.db_schema)
        self.id: ColumnClause[Any] = column(config.id_column)
        self.content: ColumnClause[Any] = column(config.content_column)
        self.name: ColumnClause[Any] | None = column(config.name_column) if config.name_column else None
        self.mime: ColumnClause[Any] | None = column(config.mime_column) if config.mime_column else None
        self._id_python_type: Callable[[str], object] | None = None
        self.version: ColumnClause[Any] | None = column(config.version_column) if config.version_column else None

    def _file_name(self, row_id: object, name: object, mime: object) -> str:
        if name:
            return str(name).replace("/", "_")
        extension = mimetypes.guess_extension(str(mime)) if mime else None
        return f"{row_id}{extension or ''}"

    def _uri(self, row_id: object, file_name: str) -> str:
        parts = (self.source_name, self.config.table, str(row_id), file_name)
        return "sql://" + "/".join(quote(part, safe="") for part in parts)

    def _id_of(self, uri: str) -> object:
        """The row id a URI names, as the id column's own type (a URI holds it as text)."""
        parts = urlsplit(uri).path.strip("/").split("/")
        text = unquote(parts[1])
        try:
            return self._id_type()(text)
        except ValueError:
            raise DocumentError(Reason.REFUSED, f"{uri} does not name a row id of {self.config.table}") from None

    def _id_type(self) -> Callable[[str], object]:
        if self._id_python_type is None:
            self._id_python_type = self._reflect_id_type()
        return self._id_python_type

    def _reflect_id_type(self) -> Callable[[str], object]:
        with self._connection() as connection:
            columns = inspect(connection).get_columns(self.config.table, schema=self.config.db_schema)
        for found in columns:
            if found["name"] == self.config.id_column:
                try:
                    python_type: Callable[[str], object] = found["type"].python_type
                except NotImplementedError:
                    return str
                return python_type if python_type in (int, str) else str
        raise ConfigError(f"source {self.source_name!r}: {self.config.table} has no column {self.config.id_column!r}")

    def list(self) -> Iterator[DocumentRef]:
        return self._rows(None)

    def _rows(self, where: ColumnElement[bool] | None) -> Iterator[DocumentRef]:
        extra = [c for c in (self.name, self.mime, self.version) if c is not None]
        measured = self.content if self.version is None else func.length(self.content)
        query = select(self.id, measured.label("measured"), *extra).select_from(self.rows).order_by(self.id)
        if where is not None:
            query = query.where(where)
        query = query.limit(self.config.batch_size)
        after: object = None
        while True:
            page = call_with_retry(self._page, query, after)
            for row in page:
                yield self._ref(row)
            if len(page) < self.config.batch_size:
                return
            after = page[-1][self.config.id_column]

    def _page(self, query: Select[Any], after: object) -> Sequence[RowMapping]:
        """One page of the listing: the next `batch_size` rows in id order after `after` (a keyset page,
        so a connection lost between pages, or during one, costs only that page: it is asked again)."""
        if after is not None:
            query = query.where(self.id > after)
        return self._fetch(query, lambda result: result.mappings().all(), f"list {self.config.table}")

    def _fetch(self, statement: Executable, fetch: Callable[[Result[Any]], T], doing: str) -> T:
        """Run `statement` and `fetch` its result: a lost connection or a timeout is transient (the caller
        retries it), any other database error is the source's configuration."""
        with self._connection() as connection:
            try:
                return fetch(connection.execute(statement))
            except DBAPIError as exc:
                if _transient(exc):
                    raise TransientError(f"source {self.source_name!r}: {doing} failed: {_short(exc)}") from None
                raise ConfigError(f"source {self.source_name!r}: cannot {doing}: {_short(exc)}") from None

    def cursor(self) -> str | None:
        """The largest version in the table now (an updated-at time less the overlap); None without a
        `version_column`: such a table is listed, and every row hashed, in full each night."""
        if self.version is None:
            return None
        newest = call_with_retry(self._newest_version)
        if isinstance(newest, datetime):  # rows committed late with an earlier time stamp
            newest -= timedelta(seconds=self.limits.cursor_overlap_s)
        return _encoded(newest)

    def _newest_version(self) -> object:
        assert self.version is not None
        query = select(func.max(self.version)).select_from(self.rows)
        return self._fetch(query, lambda result: result.scalar(), f"read {self.config.version_column}")

    def list_changes(self, since: str) -> Iterator[DocumentRef]:
        """The rows whose version is at least the cursor's (the boundary's rows again: the run sees
        their version unchanged and reads nothing)."""
        newest = _decoded(since)
        return self._rows(None if newest is _EMPTY else self.version >= newest)  # type: ignore[operator]

    def _connection(self) -> Connection:
        """A connection; a database that cannot be reached is transient (the run or the operator tries again)."""
        try:
            return self.engine.connect()
        except DBAPIError as exc:
            raise TransientError(f"source {self.source_name!r}: cannot connect: {_short(exc)}") from None

    def _ref(self, row: Any) -> DocumentRef:
        row_id = row[self.config.id_column]
        name = row[self.config.name_column] if self.config.name_column else None
        mime = row[self.config.mime_column] if self.config.mime_column else None
        file_name = self._file_name(row_id, name, mime)
        if self.version is not None:  # the version names the content: nothing read while listing
            measured = row["measured"]
            return DocumentRef(
                source=self.source_name,
                uri=self._uri(row_id, file_name),
                version=f"{self.config.version_column}:{row[self.config.version_column]}",
                size=int(measured or 0),
            )
        data = _as_bytes(row["measured"])
        sha256 = hashlib.sha256(data).hexdigest()
        return DocumentRef(
            source=self.source_name,
            uri=self._uri(row_id, file_name),
            version=f"sha256:{sha256}",
            size=len(data),
            sha256=sha256,
        )

    def read(self, ref: DocumentRef) -> bytes:
        if not ref.uri.startswith("sql://" + quote(self.source_name, safe="") + "/"):
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not a row of source {self.source_name!r}")
        row_id = self._id_of(ref.uri)
        query = select(self.content).select_from(self.rows).where(self.id == row_id)
        with self._connection() as connection:
            try:
                found = connection.execute(query).first()
            except DBAPIError as exc:
                if _transient(exc):
                    raise TransientError(f"reading {ref.uri}: {_short(exc)}") from None
                raise DocumentError(Reason.READ_ERROR, f"reading {ref.uri}: {_short(exc)}") from None
        if found is None:
            raise DocumentError(Reason.READ_ERROR, f"the row is gone: {ref.uri}")
        data = _as_bytes(found[0])
        if len(data) > self.limits.max_file_bytes:
            raise DocumentError(
                Reason.TOO_LARGE, f"{len(data)} bytes exceeds max_file_bytes={self.limits.max_file_bytes}"
            )
        return data


def _timeouts(url: URL, seconds: float) -> dict[str, Any]:
    """The driver's own time limits, so a database that stops answering fails (and is tried again)
    instead of hanging the night: PostgreSQL and MySQL drivers; others take their defaults."""
    whole = max(1, round(seconds))
    if url.get_backend_name() == "postgresql":
        return {"connect_timeout": whole, "options": f"-c statement_timeout={whole * 1000}"}
    if url.get_backend_name() in {"mysql", "mariadb"}:
        return {"connect_timeout": whole, "read_timeout": whole}
    return {}


_EMPTY = object()  # the table had no rows when the cursor was taken: every row is new


def _encoded(value: object) -> str:
    """A version value as a cursor string that keeps its type (compared in the database as that type)."""
    if value is None:
        return "empty:"
    if isinstance(value, bool | int):
        return f"int:{int(value)}"
    if isinstance(value, datetime):
        return f"datetime:{value.isoformat()}"
    if isinstance(value, date):
        return f"date:{value.isoformat()}"
    if isinstance(value, Decimal):
        return f"decimal:{value}"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"hex:{bytes(value).hex()}"
    return f"str:{value}"


def _decoded(cursor: str) -> object:
    kind, _, text = cursor.partition(":")
    try:
        match kind:
            case "empty":
                return _EMPTY
            case "int":
                return int(text)
            case "datetime":
                return datetime.fromisoformat(text)
            case "date":
                return date.fromisoformat(text)
            case "decimal":
                return Decimal(text)
            case "hex":
                return bytes.fromhex(text)
            case "str":
                return text
    except ValueError:
        pass
    raise ConfigError(f"not a listing cursor of the sql connector: {cursor!r} (run once with --full-listing)")


def _as_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def _transient(exc: DBAPIError) -> bool:
    """A lost connection, or a statement cancelled by the time limit (PostgreSQL's 57014): try again."""
    return bool(exc.connection_invalidated) or getattr(exc.orig, "sqlstate", None) == "57014"


def _short(exc: SQLAlchemyError) -> str:
    """The driver's message without the statement and parameters (they may hold document text)."""
    original = getattr(exc, "orig", None)
    return f"{type(original or exc).__name__}: {str(original or exc).splitlines()[0][:300]}"
