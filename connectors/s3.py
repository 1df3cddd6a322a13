"""An S3-compatible store (AWS S3, MinIO, Ceph RGW, ...): the `s3` connector.

Lists the objects under `url` (s3://bucket/prefix) page by page, so a listing of
millions never sits in memory, and filters their keys (relative to the prefix)
with `include`/`exclude` globs. The version marker is the object's ETag, plus
its version id when `versions = true` (a versioned bucket: each read then gets
exactly the version that was listed). The content hash is not known at listing
time; the run takes it from the state store when the same URI was read before
at the same version, so an unchanged night reads nothing.

Credentials: `access_key_id` / `secret_access_key` when set (secret values,
masked wherever settings are shown), else boto3's own chain (environment,
instance profile). Throttling, timeouts and 5xx answers are retried by the run
(pipeline/core/retry.py); a missing object or a refused read fails its document.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.base import changed_since, time_cursor
from connectors.globs import selected
from pipeline.core.connector import SourceLimits
from pipeline.core.documents import DocumentRef, ListingProblem
from pipeline.core.errors import ConfigError, DocumentError, Reason, TransientError

TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "503", "500"}


class S3SourceConfig(BaseModel):
    """`connector = "s3"`: the objects under an S3 prefix."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    connector: Literal["s3"] = "s3"
    url: str = Field(description="s3://bucket/prefix of the documents.")
    endpoint_url: str | None = Field(default=None, description="The store's endpoint (MinIO, Ceph); None: AWS.")
    region: str | None = Field(default=None, description="The bucket's region (AWS).")
    access_key_id: SecretStr | None = Field(default=None, description="Access key; None: boto3's own chain.")
    secret_access_key: SecretStr | None = Field(default=None, description="Secret key; None: boto3's own chain.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Globs on the key under the prefix.")
    exclude: list[str] = Field(default_factory=list, description="Globs of keys to leave out.")
    versions: bool = Field(default=False, description="List object versions and read exactly the listed one.")
    page_size: int = Field(default=1000, ge=1, le=1000, description="Objects per listing request.")
    timeout_s: float = Field(default=60.0, gt=0, description="Socket timeout of each request (a hung store).")


class S3Connector:
    """Lists and reads objects; URIs are `s3://bucket/key` with the key percent-encoded."""

    def __init__(self, source_name: str, config: S3SourceConfig, limits: SourceLimits | None = None) -> None:
        import boto3  # imported here: only a run with an S3 source pays for it
        from botocore.config import Config

        self.source_name = source_name
        self.config = config
        self.limits = limits or SourceLimits()
        url = urlsplit(config.url)
        if url.scheme != "s3" or not url.netloc:
            raise ConfigError(f"source {source_name!r}: url must look like s3://bucket/prefix, not {config.url!r}")
        self.bucket = url.netloc
        self.prefix = url.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        keys = config.access_key_id and config.secret_access_key
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region or "us-east-1",
            aws_access_key_id=config.access_key_id.get_secret_value() if keys and config.access_key_id else None,
            aws_secret_access_key=(
                config.secret_access_key.get_secret_value() if keys and config.secret_access_key else None
            ),
            # reads are retried by the run's retry module; listing pages by botocore (backoff with jitter)
            config=Config(
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=min(10.0, config.timeout_s),
                read_timeout=config.timeout_s,
            ),
        )

    def _uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{quote(key, safe='/')}"

    def _key(self, uri: str) -> str:
        url = urlsplit(uri)
        return unquote(url.path.lstrip("/"))

    def list(self) -> Iterator[DocumentRef]:
        return self._list(None)

    def cursor(self) -> str:
        return time_cursor(self.limits)

    def list_changes(self, since: str) -> Iterator[DocumentRef]:
        """The objects written since the cursor. S3 cannot filter a listing by time, so the pages are
        still read; what this saves is the state-store lookups and the refs of every unchanged object."""
        return self._list(changed_since(since))

    def _list(self, since: datetime | None) -> Iterator[DocumentRef]:
        try:
            yield from (self._list_versions(since) if self.config.versions else self._list_objects(since))
        except Exception as exc:
            raise _translated(exc, f"listing {self.config.url}", listing=True) from exc

    def _selected(self, key: str) -> bool:
        relative = key[len(self.prefix) :]
        return bool(relative) and not key.endswith("/") and selected(relative, self.config.include, self.config.exclude)

    def _wanted(self, item: dict[str, Any], since: datetime | None) -> bool:
        """Under the prefix, through the globs, and (with `since`) written at or after it."""
        written = item.get("LastModified")
        recent = since is None or written is None or written >= since
        return recent and self._selected(item["Key"])

    def _list_objects(self, since: datetime | None) -> Iterator[DocumentRef]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": self.config.page_size}
        )
        for page in pages:
            for item in page.get("Contents", []):
                if self._wanted(item, since):
                    yield self._ref(item["Key"], item["ETag"].strip('"'), None, item)

    def _list_versions(self, since: datetime | None) -> Iterator[DocumentRef]:
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": self.config.page_size}
        )
        for page in pages:  # delete markers are not listed here: a deleted object is simply absent
            for item in page.get("Versions", []):
                if item.get("IsLatest") and self._wanted(item, since):
                    yield self._ref(item["Key"], item["ETag"].strip('"'), item.get("VersionId"), item)

    def _ref(self, key: str, etag: str, version_id: str | None, item: dict[str, Any]) -> DocumentRef:
        version = f"etag:{etag}" + (f";version:{version_id}" if version_id and version_id != "null" else "")
        problem = None
        if item.get("StorageClass") in {"GLACIER", "DEEP_ARCHIVE"}:
            problem = ListingProblem(
                reason=Reason.READ_ERROR.value,
                message=f"archived in {item['StorageClass']}: restore it before it can be read",
            )
        return DocumentRef(
            source=self.source_name,
            uri=self._uri(key),
            version=version,
            size=int(item.get("Size", 0)),
            modified_at=item.get("LastModified"),
            problem=problem,
        )

    def read(self, ref: DocumentRef) -> bytes:
        key = self._key(ref.uri)
        if urlsplit(ref.uri).netloc != self.bucket or not key.startswith(self.prefix):
            raise DocumentError(Reason.REFUSED, f"{ref.uri} is not under this source's {self.config.url}")
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if ";version:" in ref.version:
            request["VersionId"] = ref.version.rsplit(";version:", 1)[1]
        limit = self.limits.max_file_bytes
        try:
            if ref.size > 0:  # at most one byte too many (a range on an empty object is refused: 416)
                request["Range"] = f"bytes=0-{limit}"
            response = self.client.get_object(**request)
            data: bytes = response["Body"].read()
        except Exception as exc:
            raise _translated(exc, f"reading {ref.uri}", listing=False) from exc
        if len(data) > limit:
            raise DocumentError(Reason.TOO_LARGE, f"{ref.uri} is larger than max_file_bytes={limit}")
        return data


def _translated(exc: Exception, doing: str, listing: bool) -> Exception:
    """botocore's errors as Assay's: transient ones retried by the run, the rest final for the document."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, ReadTimeoutError

    if isinstance(exc, DocumentError | TransientError | ConfigError):
        return exc
    if isinstance(exc, ConnectionError | HTTPClientError | ReadTimeoutError):
        return TransientError(f"{doing}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(f"{doing}: {code or status}")
        if code in {"NoSuchKey", "404", "NoSuchVersion"}:
            return DocumentError(Reason.READ_ERROR, f"{doing}: the object is gone ({code})")
        if code in {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
            return (
                ConfigError(f"{doing}: {code}")
                if listing  # a source that refuses its listing is misconfigured; a refused object fails alone
                else DocumentError(Reason.READ_ERROR, f"{doing}: {code}")
            )
        return DocumentError(Reason.READ_ERROR, f"{doing}: {code or status}")
    return exc
