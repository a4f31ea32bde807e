-- What the matching could not close, as rows to work, never silent drops: remittance claims
-- that match no claim of the lake, and claims with no remittance `remittance_wait_days` after
-- they were sent (only for datasources that send 835 files at all).
WITH remitting AS (
    SELECT DISTINCT datasource FROM gold.fact_remittance
)
SELECT
    'remittance_without_claim' AS exception,
    f.datasource,
    f.remittance_claim_key AS item_key,
    f.patient_control_number AS claim_id,
    f.payer,
    f.payment_date AS event_date,
    f.charge_amount AS amount,
    date_diff('day', f.payment_date, p.as_of_date) AS days_open
FROM gold.fact_remittance f, params p
WHERE f.claim_key IS NULL
UNION ALL
SELECT
    'claim_without_remittance',
    c.datasource,
    c.claim_key,
    c.claim_id,
    c.payer,
    c.claim_date,
    c.billed_amount,
    date_diff('day', c.claim_date, p.as_of_date)
FROM gold.fact_claim c, params p
WHERE c.datasource IN (SELECT datasource FROM remitting)
  AND c.claim_key NOT IN (SELECT claim_key FROM gold.fact_remittance WHERE claim_key IS NOT NULL)
  AND date_diff('day', c.claim_date, p.as_of_date) > p.remittance_wait_days
