-- Views and macros for compliance review (docs/compliance-review.md has example queries).

-- The latest review decision per finding, and per value (a decision is on one or the other).
CREATE OR REPLACE VIEW latest_review_decisions AS
    SELECT *
    FROM review_decisions
    WHERE finding_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY finding_id ORDER BY decided_at DESC, decision_id DESC) = 1;
CREATE OR REPLACE VIEW latest_value_decisions AS
    SELECT *
    FROM review_decisions
    WHERE value_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY value_id ORDER BY decided_at DESC, decision_id DESC) = 1;

-- Findings with their evidence, lineage and review state: the view reviewers start from.
CREATE OR REPLACE VIEW findings_evidence AS
    SELECT f.finding_id, f.run_id, f.document_uri, d.filetype, f.task, f.field, f.item_index, f.value,
           f.evidence_quote, f.evidence_text, f.evidence_start, f.evidence_end, f.evidence_page,
           f.grounding_status, f.grounding_score, f.grounded_on,
           f.grounding_status <> 'ungrounded' AS verified,
           coalesce(dd.deleted, false) AS document_deleted,
           round(f.confidence, 3) AS confidence,
           rd.decision AS review_decision, rd.corrected_value, rd.reviewer, rd.decided_at,
           coalesce(CASE WHEN rd.decision = 'correct' THEN rd.corrected_value END,
                    CASE WHEN rd.decision = 'reject' THEN NULL ELSE f.value END) AS reviewed_value,
           f.content_sha256, f.document_version, f.text_sha256, f.chunk_id, f.chunk_start, f.chunk_end,
           f.parser, f.parser_version, f.chunking, f.task_version, f.prompt_sha256, f.schema_sha256,
           f.model_name, f.model_sha256, f.model_quantization, f.llm_runtime, f.sampling, f.seed,
           f.answer_id, f.fingerprint, f.flow_run_id, f.created_at
    FROM findings AS f
    LEFT JOIN latest_review_decisions AS rd USING (finding_id)
    LEFT JOIN document_versions AS d ON d.run_id = f.run_id AND d.document_uri = f.document_uri
    LEFT JOIN documents AS dd ON dd.document_uri = f.document_uri;

-- Findings that need a human: not found where the model read, or the model was unsure, and not yet reviewed.
-- A slim set of columns (every lineage column is in findings_evidence, by finding_id).
CREATE OR REPLACE MACRO findings_below(min_confidence) AS TABLE
    SELECT finding_id, document_uri, task, field, value, evidence_quote, evidence_text, evidence_page,
           grounding_status, grounded_on, verified, confidence, run_id
    FROM findings_evidence
    WHERE review_decision IS NULL
      AND (NOT verified OR confidence < min_confidence);
CREATE OR REPLACE VIEW findings_to_review AS
    SELECT * FROM findings_below(0.5);

-- Coverage: every input document of every run and what happened to it, and how its findings are grounded:
-- on the model's quote (evidence), on the value alone in the chunk it read (value), by a rule, or not at all.
CREATE OR REPLACE VIEW coverage AS
    SELECT d.run_id, d.document_uri, d.filetype, d.status, d.reason, d.message, d.duplicate_of, d.pages, d.chunks,
           d.chunks_extracted, coalesce(a.answers, 0) AS answers, coalesce(a.answers_failed, 0) AS answers_failed,
           d.findings, coalesce(f.verified, 0) AS findings_verified,
           coalesce(f.on_evidence, 0) AS findings_on_evidence, coalesce(f.on_value, 0) AS findings_on_value,
           coalesce(f.by_rule, 0) AS findings_by_rule
    FROM document_versions AS d
    LEFT JOIN (
        SELECT run_id, content_sha256, count(*) AS answers, count(*) FILTER (WHERE status = 'failed') AS answers_failed
        FROM answers GROUP BY ALL
    ) AS a ON a.run_id = d.run_id AND a.content_sha256 = d.content_sha256 AND d.status = 'processed'
    LEFT JOIN (
        SELECT run_id, document_uri, count(*) FILTER (WHERE grounding_status <> 'ungrounded') AS verified,
               count(*) FILTER (WHERE grounded_on = 'evidence') AS on_evidence,
               count(*) FILTER (WHERE grounded_on = 'value') AS on_value,
               count(*) FILTER (WHERE grounded_on = 'rule') AS by_rule
        FROM findings GROUP BY ALL
    ) AS f ON f.run_id = d.run_id AND f.document_uri = d.document_uri;

-- Compare two runs: per document, task and field, the values each run found.
-- change: added (only in run b), removed (only in run a), changed (both, different values), same.
CREATE OR REPLACE MACRO compare_runs(run_a, run_b) AS TABLE
    WITH a AS (
        SELECT document_uri, task, field, list_sort(list(DISTINCT value)) AS values_a
        FROM findings WHERE run_id = run_a GROUP BY ALL
    ), b AS (
        SELECT document_uri, task, field, list_sort(list(DISTINCT value)) AS values_b
        FROM findings WHERE run_id = run_b GROUP BY ALL
    )
    SELECT coalesce(a.document_uri, b.document_uri) AS document_uri,
           coalesce(a.task, b.task) AS task,
           coalesce(a.field, b.field) AS field,
           CASE WHEN a.values_a IS NULL THEN 'added'
                WHEN b.values_b IS NULL THEN 'removed'
                WHEN a.values_a <> b.values_b THEN 'changed'
                ELSE 'same' END AS change,
           a.values_a, b.values_b
    FROM a FULL OUTER JOIN b ON a.document_uri = b.document_uri AND a.task = b.task AND a.field = b.field
    ORDER BY document_uri, task, field;
