-- documents: the latest state of every document URI ever seen (one row per URI).
-- document_versions keeps every run's row.
-- `deleted` is true when the source no longer lists the document (its past findings stay, flagged).
CREATE OR REPLACE VIEW documents AS
    SELECT d.*, coalesce(x.deleted_at > d.processed_at, false) AS deleted,
           CASE WHEN x.deleted_at > d.processed_at THEN x.deleted_at END AS deleted_at
    FROM (
        SELECT * FROM document_versions
        QUALIFY row_number() OVER (PARTITION BY document_uri ORDER BY processed_at DESC) = 1
    ) AS d
    LEFT JOIN (SELECT document_uri, max(deleted_at) AS deleted_at FROM deletions GROUP BY ALL) AS x USING (document_uri);

-- run_summary: one line per run, newest first, with its replay reproducibility when sampled.
CREATE OR REPLACE VIEW run_summary AS
    SELECT r.run_id, r.status, r.started_at, r.finished_at, round(r.duration_s, 1) AS duration_s,
           r.documents_in, r.documents_processed, r.documents_failed, r.documents_skipped,
           r.pages, r.chunks, r.answers, r.answers_failed, r.findings,
           round(r.pages_per_second, 3) AS pages_per_second,
           rp.replayed, round(rp.reproducibility, 3) AS reproducibility,
           r.model_name, r.model_sha256
    FROM runs AS r
    LEFT JOIN (
        SELECT run_id, count(*) AS replayed, avg(CASE WHEN reproduced THEN 1.0 ELSE 0.0 END) AS reproducibility
        FROM replays WHERE status = 'replayed' GROUP BY run_id
    ) AS rp USING (run_id)
    ORDER BY r.started_at DESC;

-- failures_by_reason: what went wrong, how often, per run.
CREATE OR REPLACE VIEW failures_by_reason AS
    SELECT run_id, stage, reason, count(*) AS failures
    FROM failures
    GROUP BY ALL
    ORDER BY run_id, failures DESC;
