-- 835 claim payments (CLP), matched to the lake's claims. CLP01, the patient control number,
-- is the claim id the hospital sent; when it finds no claim, the fallback is one claim of the
-- same datasource with the same service date and billed amount (only when exactly one matches).
-- Balancing: CLP03 (charge) − Σ CAS of the claim and its lines = CLP04 (paid).
WITH r AS (
    SELECT s.*,
           CAST(coalesce((SELECT sum(a.amount) FROM silver.claim_adjustments a
                          WHERE a.remittance_claim_key = s.remittance_claim_key), 0) AS DECIMAL(18, 2))
               AS adjustment_total
    FROM stage s
), claims AS (
    SELECT claim_key, datasource, claim_id, service_date, claim_amount FROM silver.claims WHERE NOT is_quarantined
), by_id AS (
    SELECT r.remittance_claim_key, min(c.claim_key) AS claim_key
    FROM r JOIN claims c ON c.datasource = r.datasource AND c.claim_id = trim(r.patient_control_number)
    GROUP BY 1
), by_amount AS (
    SELECT r.remittance_claim_key, min(c.claim_key) AS claim_key
    FROM r JOIN claims c
      ON c.datasource = r.datasource AND c.service_date = r.statement_from AND c.claim_amount = r.charge_amount
    GROUP BY 1 HAVING count(*) = 1
)
SELECT
    r.datasource,
    r.remittance_claim_key,
    r.payment_key,
    trim(r.patient_control_number) AS patient_control_number,
    trim(r.claim_status) AS claim_status,
    r.charge_amount,
    r.payment_amount,
    r.patient_responsibility,
    trim(r.payer_claim_control_number) AS payer_claim_control_number,
    trim(r.filing_indicator) AS filing_indicator,
    r.statement_from,
    r.statement_to,
    r.payment_date,
    trim(r.payer_name) AS payer_name,
    r.adjustment_total,
    coalesce(i.claim_key, a.claim_key) AS claim_key,
    CASE WHEN i.claim_key IS NOT NULL THEN 'patient_control_number'
         WHEN a.claim_key IS NOT NULL THEN 'service_date_and_amount' END AS match_method,
    r.source_file,
    CAST(r.source_modified_at AS TIMESTAMP) AS source_modified_at,
    r.cast_errors,
    r._batch_id,
    r._row_hash
FROM r
LEFT JOIN by_id i ON i.remittance_claim_key = r.remittance_claim_key
LEFT JOIN by_amount a ON a.remittance_claim_key = r.remittance_claim_key
