-- 835 service lines (SVC) with the sum of their CAS adjustments, for the balancing rule
-- SVC02 (charge) − Σ line CAS = SVC03 (paid). Bronze sums each line's CAS as it reads the
-- file; lines loaded before it did (adjustment_total NULL) are summed here.
SELECT
    s.datasource,
    s.remittance_line_key,
    s.remittance_claim_key,
    upper(trim(s.procedure_code)) AS procedure_code,
    s.procedure_qualifier,
    s.charge_amount,
    s.payment_amount,
    s.allowed_amount,
    s.units_paid,
    s.service_date,
    CAST(coalesce(s.adjustment_total, adj.total, 0) AS DECIMAL(18, 2)) AS adjustment_total,
    s.source_file,
    CAST(s.source_modified_at AS TIMESTAMP) AS source_modified_at,
    s.cast_errors,
    s._batch_id,
    s._row_hash
FROM stage s
LEFT JOIN (
    SELECT remittance_line_key, sum(amount) AS total
    FROM silver.claim_adjustments
    WHERE remittance_line_key IN (SELECT remittance_line_key FROM stage WHERE adjustment_total IS NULL)
    GROUP BY 1
) adj ON s.adjustment_total IS NULL AND adj.remittance_line_key = s.remittance_line_key
