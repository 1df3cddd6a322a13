-- Views over the Parquet lake: one per lake table, every run's rows.
-- ${lake} is replaced with the lake folder's absolute path when the warehouse is built.
CREATE OR REPLACE VIEW runs AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/runs/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW document_versions AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/documents/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW texts AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/texts/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW chunks AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/chunks/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW answers AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/answers/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW findings AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/findings/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW failures AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/failures/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW tasks AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/tasks/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW routing AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/routing/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW document_values AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/document_values/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW review_decisions AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/review_decisions/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW replays AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/replays/*/*.parquet', hive_partitioning = true, union_by_name = true);
CREATE OR REPLACE VIEW deletions AS
    SELECT * EXCLUDE (run_date) FROM read_parquet('${lake}/deletions/*/*.parquet', hive_partitioning = true, union_by_name = true);
-- The ledger: one row per manifest (files are listed inside each manifest).
CREATE OR REPLACE VIEW manifests AS
    SELECT sequence, commit_id, kind, run_id, created_at::TIMESTAMPTZ AS created_at, previous_sha256,
           len(files) AS files, list_sum([f.rows for f in files]) AS rows, filename AS manifest_file
    FROM read_json('${lake}/_manifests/*.json', filename = true, format = 'auto')
    ORDER BY sequence;
