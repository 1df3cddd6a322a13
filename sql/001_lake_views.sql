-- Views over the Parquet lake: one per lake table, every committed run's rows.
-- $${table} is replaced, when the warehouse is built, with a read of exactly the files the manifests
-- committed for that table (paths relative to the warehouse's folder, or s3:// URLs); $${manifests}
-- with a read of the manifests themselves (pipeline/land/warehouse.py). Never a glob: files of a run
-- in progress, of a crashed run, or copied in by hand are not visible.
CREATE OR REPLACE VIEW runs AS
    SELECT * EXCLUDE (run_date) FROM ${runs};
CREATE OR REPLACE VIEW document_versions AS
    SELECT * EXCLUDE (run_date) FROM ${documents};
CREATE OR REPLACE VIEW texts AS
    SELECT * EXCLUDE (run_date) FROM ${texts};
CREATE OR REPLACE VIEW chunks AS
    SELECT * EXCLUDE (run_date) FROM ${chunks};
CREATE OR REPLACE VIEW answers AS
    SELECT * EXCLUDE (run_date) FROM ${answers};
CREATE OR REPLACE VIEW findings AS
    SELECT * EXCLUDE (run_date) FROM ${findings};
CREATE OR REPLACE VIEW failures AS
    SELECT * EXCLUDE (run_date) FROM ${failures};
CREATE OR REPLACE VIEW tasks AS
    SELECT * EXCLUDE (run_date) FROM ${tasks};
CREATE OR REPLACE VIEW routing AS
    SELECT * EXCLUDE (run_date) FROM ${routing};
CREATE OR REPLACE VIEW document_values AS
    SELECT * EXCLUDE (run_date) FROM ${document_values};
CREATE OR REPLACE VIEW review_decisions AS
    SELECT * EXCLUDE (run_date) FROM ${review_decisions};
CREATE OR REPLACE VIEW replays AS
    SELECT * EXCLUDE (run_date) FROM ${replays};
CREATE OR REPLACE VIEW deletions AS
    SELECT * EXCLUDE (run_date) FROM ${deletions};
-- The ledger: one row per manifest (files are listed inside each manifest).
CREATE OR REPLACE VIEW manifests AS
    SELECT sequence, commit_id, kind, run_id, created_at::TIMESTAMPTZ AS created_at, previous_sha256,
           len(files) AS files, list_sum([f.rows for f in files]) AS rows, filename AS manifest_file
    FROM ${manifests}
    ORDER BY sequence;
