-- Denials by reason, payer and month, in claims and dollars. Where remittances (X12 835) land,
-- the reasons are the payers' CARC codes with their category (basis '835'): each denial
-- adjustment of a denied remittance claim, duplicates (CARC 18) included but flagged. A denied
-- claim of the claims file that no remittance covers keeps 'not provided by source' (basis
-- 'claims file'), so sources without 835 files still count their denials.
WITH remit AS (
    SELECT a.datasource, a.payer, a.payer_type, a.reason_code, a.reason_description, a.category,
           a.is_duplicate, a.claim_month, a.remittance_claim_key, a.amount
    FROM gold.fact_adjustment a
    JOIN gold.fact_remittance f ON f.remittance_claim_key = a.remittance_claim_key
    WHERE f.is_denied AND a.is_denial_adjustment
)
SELECT
    datasource, payer, payer_type,
    reason_description AS denial_reason,
    reason_code,
    category,
    is_duplicate,
    '835' AS basis,
    claim_month,
    count(DISTINCT remittance_claim_key) AS denied_claims,
    CAST(sum(amount) AS DECIMAL(18, 2)) AS denied_amount
FROM remit
GROUP BY ALL
UNION ALL
SELECT
    datasource, payer, payer_type,
    coalesce(denial_reason, 'not provided by source') AS denial_reason,
    CAST(NULL AS VARCHAR) AS reason_code,
    'not provided by source' AS category,
    false AS is_duplicate,
    'claims file' AS basis,
    CAST(date_trunc('month', claim_date) AS DATE) AS claim_month,
    count(*) AS denied_claims,
    CAST(sum(billed_amount) AS DECIMAL(18, 2)) AS denied_amount
FROM gold.fact_claim c
WHERE is_denied
  AND c.claim_key NOT IN (SELECT claim_key FROM gold.fact_remittance WHERE claim_key IS NOT NULL)
GROUP BY ALL
