-- documents: the latest state of every document URI ever seen (one row per URI).
-- document_versions keeps every run's row.
CREATE OR REPLACE VIEW documents AS
    SELECT d.*
    FROM document_versions AS d
    JOIN runs AS r USING (run_id)
    QUALIFY row_number() OVER (PARTITION BY d.uri ORDER BY d.processed_at DESC) = 1;

-- run_summary: one line per run, newest first.
CREATE OR REPLACE VIEW run_summary AS
    SELECT run_id, status, started_at, finished_at, round(duration_s, 1) AS duration_s,
           documents_in, documents_processed, documents_failed, documents_skipped,
           pages, chunks, answers, answers_failed, findings, round(pages_per_second, 3) AS pages_per_second,
           model_name, model_sha256
    FROM runs
    ORDER BY started_at DESC;

-- failures_by_reason: what went wrong, how often, per run.
CREATE OR REPLACE VIEW failures_by_reason AS
    SELECT run_id, stage, reason, count(*) AS failures
    FROM failures
    GROUP BY ALL
    ORDER BY run_id, failures DESC;
