-- One row per 835 claim payment (CLP) that passed quality, joined through its matched claim to
-- the payer, patient and provider dimensions (-1 when the remittance matched no claim).
-- A claim is denied on a remittance when the payer says so (CLP02 = 4) or pays nothing on a
-- charge while adjusting it for a denial reason (a CARC whose category is neither contractual
-- nor patient responsibility). A reversal (CLP02 = 22) is never a denial.
WITH r AS (
    SELECT * FROM silver.remittance_claims WHERE NOT is_quarantined
), repeated AS (
    -- claims with more than one remittance: only their rows are numbered by a window (most
    -- have one, numbered 1; a window over every row sorted all of them with their columns:
    -- at scale 10, 14.6 s of the model's 20.9)
    SELECT coalesce(claim_key, remittance_claim_key) AS claim
    FROM silver.remittance_claims WHERE NOT is_quarantined GROUP BY 1 HAVING count(*) > 1
), sequence AS (
    SELECT remittance_claim_key,
           row_number() OVER (PARTITION BY coalesce(claim_key, remittance_claim_key)
                              ORDER BY payment_date, remittance_claim_key) AS remittance_sequence
    FROM silver.remittance_claims
    WHERE NOT is_quarantined AND coalesce(claim_key, remittance_claim_key) IN (SELECT claim FROM repeated)
), carc AS (
    SELECT carc_code, category FROM silver.carc_codes WHERE is_current AND NOT is_quarantined
), a AS (
    SELECT remittance_claim_key,
           sum(amount) FILTER (WHERE coalesce(c.category, 'other') = 'contractual') AS contractual,
           sum(amount) FILTER (WHERE group_code = 'PR') AS pr,
           sum(amount) FILTER (WHERE coalesce(c.category, 'other') NOT IN ('contractual', 'patient_responsibility')
                                 AND group_code <> 'PR') AS denial,
           count(*) FILTER (WHERE coalesce(c.category, 'other') NOT IN ('contractual', 'patient_responsibility'))
               AS denial_adjustments,
           count(*) FILTER (WHERE reason_code = '18') AS duplicate_adjustments
    FROM silver.claim_adjustments ca LEFT JOIN carc c ON c.carc_code = ca.reason_code
    WHERE NOT ca.is_quarantined
    GROUP BY 1
)
SELECT
    r.remittance_claim_key,
    r.datasource,
    r.claim_key,
    r.match_method,
    r.payment_key,
    r.patient_control_number,
    r.payer_claim_control_number,
    coalesce(fc.payer_sk, -1) AS payer_sk,
    coalesce(fc.patient_sk, -1) AS patient_sk,
    coalesce(fc.provider_sk, -1) AS provider_sk,
    coalesce(fc.payer, r.payer_name) AS payer,
    fc.payer_type,
    r.payment_date,
    CAST(strftime(r.payment_date, '%Y%m%d') AS INTEGER) AS payment_date_key,
    CAST(date_trunc('month', r.payment_date) AS DATE) AS payment_month,
    fc.claim_date,
    CAST(date_trunc('month', coalesce(fc.claim_date, r.payment_date)) AS DATE) AS claim_month,
    r.claim_status,
    r.claim_status = '22' AS is_reversal,
    r.claim_status <> '22' AND (r.claim_status = '4'
        OR (r.payment_amount = 0 AND r.charge_amount > 0 AND coalesce(a.denial_adjustments, 0) > 0))
        AS is_denied,
    coalesce(a.duplicate_adjustments, 0) > 0 AS is_duplicate,
    r.charge_amount,
    r.payment_amount,
    r.patient_responsibility,
    CAST(coalesce(a.contractual, 0) AS DECIMAL(18, 2)) AS contractual_adjustment,
    CAST(coalesce(a.pr, 0) AS DECIMAL(18, 2)) AS patient_responsibility_adjustment,
    CAST(coalesce(a.denial, 0) AS DECIMAL(18, 2)) AS denial_adjustment,
    CASE WHEN r.payment_date >= fc.claim_date THEN date_diff('day', fc.claim_date, r.payment_date) END
        AS days_claim_to_remittance,
    coalesce(q.remittance_sequence, 1) AS remittance_sequence,
    r.source_file
FROM r
LEFT JOIN a ON a.remittance_claim_key = r.remittance_claim_key
LEFT JOIN gold.fact_claim fc ON fc.claim_key = r.claim_key
LEFT JOIN sequence q ON q.remittance_claim_key = r.remittance_claim_key
