"""A run's summary: its counts and where it landed, and the one place it is rendered (text and Markdown)."""

from __future__ import annotations

from pydantic import Field

from pipeline.run.counts import Counts


class RunSummary(Counts):
    """What a run did, as the CLI prints it, the flow returns it and the Prefect artifact shows it."""

    run_id: str
    flow_run_id: str | None
    status: str  # completed | incomplete (not every listed document accounted for)
    documents_in: int
    deleted: int = 0
    listing: dict[str, str] = Field(default_factory=dict)  # per source: listed in full, or changes since a cursor
    duration_s: float
    pages_per_second: float
    warehouse: str
    manifest_sha256: str
    model_sha256: str
    workers: list[str] = Field(default_factory=list)  # host:pid of each process that did shards
    mirror: str | None = None  # what publishing to the S3 mirror did (None: no mirror set)
    warnings: list[str] = Field(default_factory=list)  # what went wrong after the commit (the run still landed)
    report: str | None = None  # the run's HTML report, when the flow wrote one


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))


def render_text(summary: RunSummary) -> list[str]:
    """The summary as the lines `assay run` prints (plain text)."""
    failed, answers = _reasons(summary.document_failures), _reasons(summary.answer_failures)
    lines = [
        f"Run {summary.run_id} {summary.status} in {summary.duration_s:.1f} s",
        f"  documents in:   {summary.documents_in}"
        + (f"  (and {summary.children} inside archives and e-mails)" if summary.children else ""),
        f"  processed:      {summary.processed}",
        f"  failed:         {summary.failed}" + (f"  ({failed})" if failed else ""),
        f"  skipped:        {summary.skipped}" + (f"  (unchanged {summary.unchanged})" if summary.unchanged else ""),
    ]
    if summary.deleted:
        lines.append(f"  deleted:        {summary.deleted}  (gone from the source; past findings kept)")
    lines += [f"  listing:        {source}: {how}" for source, how in summary.listing.items()]
    lines += [
        f"  pages:          {summary.pages}",
        f"  chunks:         {summary.chunks}",
        f"  model answers:  {summary.answers}, failed {summary.answers_failed}, partial {summary.answers_partial}"
        + (f"  ({answers})" if answers else "")
        + (f"; {summary.answers_asked_again} asked again after a loop" if summary.answers_asked_again else ""),
        f"  chunks routed:  {summary.chunks_routed} to the model, {summary.chunks_not_routed} not (why: table routing)",
        *(
            [f"  model slots:    {summary.slot_fill:.0%} full over {summary.slot_steps} slot-steps"]
            if summary.slot_fill is not None
            else []
        ),
        *(
            [f"  parsed ahead:   {summary.shards_parsed_ahead} shards, while the shard before was with the model"]
            if summary.shards_parsed_ahead
            else []
        ),
        f"  findings:       {summary.findings}",
        f"  values:         {summary.values} per-document values, {summary.disagreements} disagreements to review",
        f"  pages/second:   {summary.pages_per_second}",
        "  seconds/stage:  " + ", ".join(f"{k} {v}" for k, v in summary.stage_seconds.items()),
    ]
    if summary.mirror is not None:
        lines.append(f"  mirror:         {summary.mirror}")
    if summary.report:
        lines.append(f"  report:         {summary.report}")
    lines += [f"  warning:        {warning}" for warning in summary.warnings]
    return lines


def render_markdown(summary: RunSummary) -> str:
    """The summary as Markdown (the flow's artifact)."""
    lines = [
        f"# Assay run `{summary.run_id}`: {summary.status}",
        "",
        "| documents in | processed | failed | skipped | pages | chunks | answers (failed, partial) | findings "
        "| pages/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {summary.documents_in} | {summary.processed} | {summary.failed} | {summary.skipped} | {summary.pages} "
        f"| {summary.chunks} | {summary.answers} ({summary.answers_failed}, {summary.answers_partial}) "
        f"| {summary.findings} "
        f"| {summary.pages_per_second} |",
        "",
        (
            f"Documents inside archives and e-mails: {summary.children} (counted in processed, failed, skipped).\n\n"
            if summary.children
            else ""
        )
        + f"Chunks sent to the model: {summary.chunks_routed} (not routed: {summary.chunks_not_routed}); "
        f"per-document values: {summary.values}, disagreements to review: {summary.disagreements}.",
        "",
        *(
            ["## Listing", "", *[f"- `{source}`: {how}" for source, how in summary.listing.items()], ""]
            if summary.listing
            else []
        ),
        "## Seconds per stage",
        "",
        *(
            [f"Parsing overlapped the model for {summary.shards_parsed_ahead} shards (`[parsing] ahead`).", ""]
            if summary.shards_parsed_ahead
            else []
        ),
        "| stage | seconds |",
        "|---|---|",
        *[f"| {stage} | {seconds} |" for stage, seconds in summary.stage_seconds.items()],
    ]
    if summary.warnings:
        lines += ["", "## Warnings", "", *[f"- {warning}" for warning in summary.warnings]]
    for title, counts in (
        ("Documents failed, by reason", summary.document_failures),
        ("Model answers failed or partial, by reason", summary.answer_failures),
    ):
        if counts:
            lines += ["", f"## {title}", "", "| reason | count |", "|---|---|"]
            lines += [f"| {reason} | {count} |" for reason, count in sorted(counts.items())]
    return "\n".join(lines)
