-- Per-document values (one row per field value, reduced from every chunk's findings and the rules).

-- current_values: each document's values from the newest run that extracted them, with the
-- document's current URI(s), deleted flag, and the latest review decision on each value
-- (`reviewed_value`: the corrected value, none when rejected, else the value).
CREATE OR REPLACE VIEW current_values AS
    SELECT d.document_uri, d.deleted, v.* EXCLUDE (document_uri),
           rd.decision AS review_decision, rd.corrected_value, rd.reviewer, rd.decided_at, rd.comment AS review_comment,
           coalesce(CASE WHEN rd.decision = 'correct' THEN rd.corrected_value END,
                    CASE WHEN rd.decision = 'reject' THEN NULL ELSE v.value END) AS reviewed_value
    FROM (
        SELECT * FROM document_values
        QUALIFY dense_rank() OVER (PARTITION BY content_sha256, task ORDER BY created_at DESC, run_id DESC) = 1
    ) AS v
    JOIN documents AS d USING (content_sha256)
    LEFT JOIN latest_value_decisions AS rd USING (value_id);

-- values_to_review: fields whose candidates disagree, or whose only candidates were not found in the text,
-- not yet decided (`assay export --view values_to_review --out review.xlsx`, then `assay review --from`).
CREATE OR REPLACE VIEW values_to_review AS
    SELECT value_id, document_uri, task, field, status, value, alternatives, evidence_text, evidence_page, run_id
    FROM current_values
    WHERE status IN ('disagreement', 'unsupported') AND review_decision IS NULL
    ORDER BY document_uri, task, field, item_index;

-- routing_summary: per run and task, how many chunks went to the model and why the others did not.
CREATE OR REPLACE VIEW routing_summary AS
    SELECT run_id, task, count(*) AS chunks, count(*) FILTER (WHERE routed) AS routed,
           count(*) FILTER (WHERE NOT routed) AS not_routed,
           round(count(*) FILTER (WHERE routed) / count(*), 3) AS routed_share
    FROM routing
    GROUP BY ALL
    ORDER BY run_id, task;
