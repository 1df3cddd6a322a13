"""`assay verify`: is what analysts read exactly what the runs committed, signed, and all of it?

Beyond re-hashing every file and walking the chain (pipeline/land/ledger.py), it checks:
- signatures: every manifest is signed by a trusted key (the installation's, or `signing.trusted_keys`);
  `legacy_unsigned` accepts unsigned manifests up to a sequence number (a lake begun before signing);
- anchors: the heads recorded in the state store at each commit, outside the lake, are in the lake
  with the same SHA-256 (a lake cut back, or rewritten and re-hashed, disagrees); a lake with no
  manifest while runs were recorded fails; `expect_head` pins the head to a value kept elsewhere;
- views: the warehouse's views and macros are the ones the committed SQL gives over the committed
  files (a redefined view, a flipped byte in the catalog, a catalog of another lake).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import duckdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pipeline.core.settings import Settings
from pipeline.land import warehouse
from pipeline.land.ledger import Ledger, VerifyReport, verify
from pipeline.land.signing import key_id, load_or_create, load_public, signature_problem
from pipeline.land.store import LakeStore, open_store
from pipeline.run.context import get_state, state_url

_DEFINITIONS = """
    SELECT 'view ' || view_name, sql FROM duckdb_views() WHERE NOT internal AND database_name = current_database()
    UNION ALL
    SELECT 'macro ' || function_name, coalesce(macro_definition, '') FROM duckdb_functions()
    WHERE function_type IN ('macro', 'table_macro') AND NOT internal AND database_name = current_database()
"""


def trusted_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    own = load_or_create(settings.signing.key_file).private.public_key()
    keys = [own, *(load_public(path) for path in settings.signing.trusted_keys)]
    return {key_id(key): key for key in keys}


def verify_all(settings: Settings, expect_head: str | None = None, legacy_unsigned: int = 0) -> VerifyReport:
    """Every check of this module and of the ledger, in one report."""
    store = open_store(settings)
    report = verify(store)
    ledger = Ledger(store)
    try:
        manifests = ledger.manifests()
    except (ValueError, KeyError, TypeError):
        return report  # the ledger's own check said so
    trusted = trusted_keys(settings)
    for manifest in manifests:
        document = json.loads(store.read_bytes(manifest.relative))
        problem = signature_problem(document, trusted)
        if problem == "not signed" and manifest.sequence <= legacy_unsigned:
            continue
        if problem:
            report.signatures.append(f"{manifest.name}: {problem}")
    state = get_state(state_url(settings))
    recorded = state.recorded_heads()
    in_lake = {m.sequence: m.sha256 for m in manifests}
    for sequence, sha256 in recorded:
        if sequence not in in_lake:
            report.anchors.append(f"manifest {sequence} ({sha256[:12]}) was committed, and is not in the lake")
        elif in_lake[sequence] != sha256:
            report.anchors.append(f"manifest {sequence} is not the one committed ({sha256[:12]} then, now another)")
    if not manifests and (recorded or state.completed_runs()):
        report.anchors.append("the lake holds no manifest, while runs were committed to it")
    if recorded and manifests and manifests[-1].sequence > recorded[-1][0]:
        report.notes.append(
            f"manifests after {recorded[-1][0]} were not recorded outside the lake (a commit cut short); "
            "their signatures were checked"
        )
    head = manifests[-1].sha256 if manifests else None
    if expect_head is not None and head != expect_head:
        report.anchors.append(f"the head is {head}, expected {expect_head}")
    report.views += view_problems(settings.warehouse_path, store)
    return report


def _definitions(path: Path, folder: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True, config={"file_search_path": str(folder)}) as con:
        return {str(name): str(sql) for name, sql in con.execute(_DEFINITIONS).fetchall()}


def view_problems(warehouse_path: Path, store: LakeStore) -> list[str]:
    """Where the warehouse's views differ from a catalog built now from the committed SQL and files."""
    if not warehouse_path.exists():
        return []
    with tempfile.TemporaryDirectory(dir=warehouse_path.parent, prefix=".verify-") as scratch:
        fresh = Path(scratch) / warehouse_path.name
        try:
            warehouse.build(fresh, store, seen_from=warehouse_path.parent)
        except (warehouse.WarehouseError, duckdb.Error) as exc:
            return [f"the committed lake gives no catalog to compare with ({str(exc).splitlines()[0]})"]
        expected = _definitions(fresh, warehouse_path.parent)
    try:
        actual = _definitions(warehouse_path, warehouse_path.parent)
    except duckdb.Error as exc:
        return [f"{warehouse_path.name} cannot be read ({str(exc).splitlines()[0]}): run `assay warehouse`"]
    problems = [
        f"{name} is not the committed definition" for name in sorted(expected) if actual.get(name) != expected[name]
    ]
    problems += [f"{name} is not in the committed SQL" for name in sorted(set(actual) - set(expected))]
    return problems
