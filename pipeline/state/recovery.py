"""After a crash: make the state store and the lake agree with the manifests, before a run starts.

The order a run lands in (pipeline/job.py, finish_run): shard files (any time),
then `work_done` marks, then the run's manifest, then the run marked completed.
A crash anywhere leaves one of three states, and each is repaired here:

1. files written, no marks, no manifest: the files are moved out of the lake
   (quarantine) and the work is done again;
2. marks written, no manifest: the marks are dropped, the files quarantined;
3. manifest written, run not marked completed: the run did land; it is marked completed.

Quarantine is `<data_dir>/quarantine/<time>/` for a local lake and
`<prefix>/_quarantine/<time>/` for one on S3 (pipeline/lake_store.py).

So no partial or unaccounted file stays visible to the views, nothing is
counted twice, and nothing is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipeline.land.ledger import Ledger
from pipeline.land.store import LakeStore, as_store
from pipeline.state.store import StateStore

logger = logging.getLogger(__name__)


@dataclass
class Recovery:
    completed: list[str] = field(default_factory=list)  # runs that had landed but were not marked
    crashed: list[str] = field(default_factory=list)  # runs whose work was rolled back
    quarantined: list[str] = field(default_factory=list)  # lake files moved out


def recover(store: StateStore, lake: LakeStore | Path) -> Recovery:
    result = Recovery()
    files = as_store(lake)
    manifests = Ledger(files).manifests()
    committed = {m.commit_id for m in manifests}
    for run_id in store.unfinished_runs():
        if run_id in committed:
            store.run_finished(run_id, "completed")
            result.completed.append(run_id)
        else:
            store.forget_run(run_id)
            store.run_finished(run_id, "crashed")
            result.crashed.append(run_id)
    listed = {entry.path for m in manifests for entry in m.files}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for relative in sorted(set(files.data_files()) - listed):
        files.quarantine(relative, stamp)
        result.quarantined.append(relative)
    if result.crashed or result.quarantined:
        logger.warning(
            "recovered from a crash: runs rolled back %s, files quarantined %d (in %s)",
            result.crashed,
            len(result.quarantined),
            files.quarantine_root,
        )
    return result
