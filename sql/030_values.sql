-- Per-document values (one row per field value, reduced from every chunk's findings and the rules).

-- value_grounding: per value, what its supporting findings are grounded on (findings.grounded_on), the strongest:
-- `rule` (a rule's match), then `evidence` (the model's quote, holding the value), then `value` (the value alone,
-- in the chunk the model read); null when none of them was found in the text (or the value has no support).
CREATE OR REPLACE VIEW value_grounding AS
    SELECT v.value_id,
           CASE max(CASE f.grounded_on WHEN 'rule' THEN 3 WHEN 'evidence' THEN 2 WHEN 'value' THEN 1 END)
               WHEN 3 THEN 'rule' WHEN 2 THEN 'evidence' WHEN 1 THEN 'value' END AS grounded_on
    FROM (SELECT value_id, run_id, unnest(finding_ids) AS finding_id FROM document_values) AS v
    JOIN findings AS f USING (run_id, finding_id)
    GROUP BY v.value_id;

-- current_values: each document's values from the newest run that extracted them, with the
-- document's current URI(s), deleted flag, what the value is grounded on (view value_grounding), and the
-- latest review decision on each value (`reviewed_value`: the corrected value, none when rejected, else the value).
CREATE OR REPLACE VIEW current_values AS
    SELECT d.document_uri, d.deleted, v.* EXCLUDE (document_uri), g.grounded_on,
           rd.decision AS review_decision, rd.corrected_value, rd.reviewer, rd.decided_at, rd.comment AS review_comment,
           coalesce(CASE WHEN rd.decision = 'correct' THEN rd.corrected_value END,
                    CASE WHEN rd.decision = 'reject' THEN NULL ELSE v.value END) AS reviewed_value
    FROM (
        SELECT * FROM document_values
        QUALIFY dense_rank() OVER (PARTITION BY content_sha256, task ORDER BY created_at DESC, run_id DESC) = 1
    ) AS v
    JOIN documents AS d USING (content_sha256)
    LEFT JOIN value_grounding AS g USING (value_id)
    LEFT JOIN latest_value_decisions AS rd USING (value_id);

-- values_to_review: fields whose candidates disagree, whose best candidate the ranker is unsure of (uncertain),
-- or whose only candidates were not found in the text,
-- not yet decided (`assay export --view values_to_review --out review.xlsx`, then `assay review --from`).
CREATE OR REPLACE VIEW values_to_review AS
    SELECT value_id, document_uri, task, field, status, value, alternatives, evidence_text, evidence_page,
           grounded_on, run_id
    FROM current_values
    WHERE status IN ('disagreement', 'unsupported', 'uncertain') AND review_decision IS NULL
    ORDER BY document_uri, task, field, item_index;

-- routing_summary: per run and task, how many chunks went to the model and why the others did not.
CREATE OR REPLACE VIEW routing_summary AS
    SELECT run_id, task, count(*) AS chunks, count(*) FILTER (WHERE routed) AS routed,
           count(*) FILTER (WHERE NOT routed) AS not_routed,
           round(count(*) FILTER (WHERE routed) / count(*), 3) AS routed_share
    FROM routing
    GROUP BY ALL
    ORDER BY run_id, task;
