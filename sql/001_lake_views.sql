-- Views over the Parquet lake: one per lake table, every committed run's rows.
-- $${table} is replaced, when the warehouse is built, with a read of exactly the files the manifests
-- committed for that table (paths relative to the warehouse's folder, or s3:// URLs); $${manifests}
-- with a read of the manifests themselves (pipeline/land/warehouse.py). Never a glob: files of a run
-- in progress, of a crashed run, or copied in by hand are not visible.
-- Naming: a document's URI is `document_uri` in every view; JSON columns are of type JSON.
CREATE OR REPLACE VIEW runs AS
    SELECT * EXCLUDE (run_date)
             REPLACE (sources::JSON AS sources, tasks::JSON AS tasks, config::JSON AS config,
                      versions::JSON AS versions, host::JSON AS host, stage_seconds::JSON AS stage_seconds)
    FROM ${runs};
CREATE OR REPLACE VIEW document_versions AS
    SELECT * EXCLUDE (run_date) RENAME (uri AS document_uri) FROM ${documents};
CREATE OR REPLACE VIEW texts AS
    SELECT * EXCLUDE (run_date) REPLACE (page_spans::JSON AS page_spans) FROM ${texts};
CREATE OR REPLACE VIEW chunks AS
    SELECT * EXCLUDE (run_date) REPLACE (chunking::JSON AS chunking) FROM ${chunks};
CREATE OR REPLACE VIEW answers AS
    SELECT * EXCLUDE (run_date) REPLACE (sampling::JSON AS sampling) FROM ${answers};
CREATE OR REPLACE VIEW findings AS
    SELECT * EXCLUDE (run_date)
             REPLACE (value_json::JSON AS value_json, sampling::JSON AS sampling, chunking::JSON AS chunking)
    FROM ${findings};
CREATE OR REPLACE VIEW failures AS
    SELECT * EXCLUDE (run_date) RENAME (uri AS document_uri) FROM ${failures};
CREATE OR REPLACE VIEW tasks AS
    SELECT * EXCLUDE (run_date) FROM ${tasks};
CREATE OR REPLACE VIEW routing AS
    SELECT * EXCLUDE (run_date) FROM ${routing};
CREATE OR REPLACE VIEW document_values AS
    SELECT * EXCLUDE (run_date) REPLACE (alternatives::JSON AS alternatives) FROM ${document_values};
CREATE OR REPLACE VIEW review_decisions AS
    SELECT * EXCLUDE (run_date) FROM ${review_decisions};
CREATE OR REPLACE VIEW replays AS
    SELECT * EXCLUDE (run_date) FROM ${replays};
CREATE OR REPLACE VIEW deletions AS
    SELECT * EXCLUDE (run_date) RENAME (uri AS document_uri) FROM ${deletions};
-- The ledger: one row per manifest (files are listed inside each manifest).
CREATE OR REPLACE VIEW manifests AS
    SELECT sequence, commit_id, kind, run_id, created_at::TIMESTAMPTZ AS created_at, previous_sha256,
           len(files) AS files, list_sum([f.rows for f in files]) AS rows, filename AS manifest_file
    FROM ${manifests}
    ORDER BY sequence;
