-- 835 service lines (SVC) with the sum of their CAS adjustments, for the balancing rule
-- SVC02 (charge) − Σ line CAS = SVC03 (paid).
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
    CAST(coalesce((SELECT sum(a.amount) FROM silver.claim_adjustments a
                   WHERE a.remittance_line_key = s.remittance_line_key), 0) AS DECIMAL(18, 2))
        AS adjustment_total,
    s.source_file,
    CAST(s.source_modified_at AS TIMESTAMP) AS source_modified_at,
    s.cast_errors,
    s._batch_id,
    s._row_hash
FROM stage s
