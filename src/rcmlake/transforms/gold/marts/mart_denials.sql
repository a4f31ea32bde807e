-- Denied claims and dollars by claim month; the source has no denial reason (CARC codes arrive
-- with remittances), so every denial carries 'not provided by source' rather than vanishing.
SELECT
    datasource, payer, payer_type,
    coalesce(denial_reason, 'not provided by source') AS denial_reason,
    CAST(date_trunc('month', claim_date) AS DATE) AS claim_month,
    count(*) AS denied_claims,
    CAST(sum(billed_amount) AS DECIMAL(18, 2)) AS denied_amount
FROM gold.fact_claim
WHERE is_denied
GROUP BY ALL
