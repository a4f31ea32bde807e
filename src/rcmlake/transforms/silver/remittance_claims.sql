-- 835 claim payments (CLP), matched to the lake's claims. CLP01, the patient control number,
-- is the claim id the hospital sent; when it finds no claim, the fallback is one claim of the
-- same datasource with the same service date and billed amount (only when exactly one matches).
-- Balancing: CLP03 (charge) − Σ CAS of the claim and its lines = CLP04 (paid). Bronze sums
-- each claim's CAS as it reads the file; rows loaded before it did (adjustment_total NULL)
-- are summed here from silver's adjustments.
WITH adjustments AS (
    SELECT remittance_claim_key, sum(amount) AS total
    FROM silver.claim_adjustments
    WHERE remittance_claim_key IN (SELECT remittance_claim_key FROM stage WHERE adjustment_total IS NULL)
    GROUP BY 1
), alone AS (
    -- claims alone in their (datasource, service date, billed amount): the fallback match
    SELECT datasource, service_date, claim_amount, min(claim_key) AS claim_key
    FROM silver.claims WHERE NOT is_quarantined
    GROUP BY 1, 2, 3 HAVING count(*) = 1
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
    CAST(coalesce(r.adjustment_total, adj.total, 0) AS DECIMAL(18, 2)) AS adjustment_total,
    coalesce(i.claim_key, a.claim_key) AS claim_key,
    CASE WHEN i.claim_key IS NOT NULL THEN 'patient_control_number'
         WHEN a.claim_key IS NOT NULL THEN 'service_date_and_amount' END AS match_method,
    r.source_file,
    CAST(r.source_modified_at AS TIMESTAMP) AS source_modified_at,
    r.cast_errors,
    r._batch_id,
    r._row_hash
FROM stage r
LEFT JOIN adjustments adj
  ON r.adjustment_total IS NULL AND adj.remittance_claim_key = r.remittance_claim_key
-- a claim's key is its id and datasource, so at most one claim has this id
LEFT JOIN (SELECT claim_key, datasource, claim_id FROM silver.claims WHERE NOT is_quarantined) i
  ON i.datasource = r.datasource AND i.claim_id = trim(r.patient_control_number)
LEFT JOIN alone a
  ON i.claim_key IS NULL AND a.datasource = r.datasource AND a.service_date = r.statement_from
 AND a.claim_amount = r.charge_amount
