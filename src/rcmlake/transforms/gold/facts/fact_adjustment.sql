-- One row per CAS adjustment of a remittance in fact_remittance, with its CARC description and
-- category (docs/KPIS.md: the categories). A denial adjustment has a category other than
-- contractual and patient responsibility; CARC 18 (exact duplicate) is flagged apart.
WITH carc AS (
    SELECT carc_code, description, category, start_date, stop_date
    FROM silver.carc_codes WHERE is_current AND NOT is_quarantined
)
SELECT
    a.adjustment_key,
    a.remittance_claim_key,
    a.remittance_line_key,
    a.level,
    f.datasource,
    f.claim_key,
    f.payer_sk,
    f.patient_sk,
    f.provider_sk,
    f.payer,
    f.payer_type,
    f.payment_date,
    f.payment_date_key,
    f.payment_month,
    f.claim_month,
    a.group_code,
    a.reason_code,
    coalesce(c.description, 'code not in the CARC list') AS reason_description,
    coalesce(c.category, 'other') AS category,
    coalesce(f.payment_date BETWEEN c.start_date AND coalesce(c.stop_date, DATE '9999-12-31'), false)
        AS is_code_active,
    coalesce(c.category, 'other') NOT IN ('contractual', 'patient_responsibility') AS is_denial_adjustment,
    a.reason_code = '18' AS is_duplicate,
    a.amount,
    a.quantity
FROM silver.claim_adjustments a
JOIN gold.fact_remittance f ON f.remittance_claim_key = a.remittance_claim_key
LEFT JOIN carc c ON c.carc_code = a.reason_code
WHERE NOT a.is_quarantined
