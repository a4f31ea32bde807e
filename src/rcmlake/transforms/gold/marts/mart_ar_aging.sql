-- Open A/R at every month end (and the as-of date). A claim is open from its claim date until it
-- is paid; its balance is billed − paid so far (no adjustment is known before payment). Age is
-- measured from the service date or the claim date (params.aging_basis), recorded per row.
WITH snapshots AS (
    SELECT date AS as_of_date FROM gold.dim_date, params p
    WHERE is_month_end AND date <= p.as_of_date AND date >= (SELECT min(claim_date) FROM gold.fact_claim)
    UNION
    SELECT as_of_date FROM params
), open_claims AS (
    SELECT
        s.as_of_date, f.datasource, f.payer, f.payer_type,
        f.billed_amount - CASE WHEN f.paid_date <= s.as_of_date THEN f.paid_amount ELSE 0 END AS balance,
        date_diff('day', CASE WHEN p.aging_basis = 'claim_date' THEN f.claim_date ELSE f.service_date END,
                  s.as_of_date) AS age_days,
        p.aging_basis
    FROM gold.fact_claim f
    JOIN snapshots s ON f.claim_date <= s.as_of_date
        AND NOT (f.claim_status = 'Paid' AND f.paid_date <= s.as_of_date)
    CROSS JOIN params p
), bucketed AS (
    SELECT *,
        CASE WHEN age_days <= 30 THEN '0-30' WHEN age_days <= 60 THEN '31-60' WHEN age_days <= 90 THEN '61-90'
             WHEN age_days <= 120 THEN '91-120' ELSE '120+' END AS aging_bucket,
        CASE WHEN age_days <= 30 THEN 1 WHEN age_days <= 60 THEN 2 WHEN age_days <= 90 THEN 3
             WHEN age_days <= 120 THEN 4 ELSE 5 END AS bucket_order
    FROM open_claims
)
SELECT
    as_of_date, datasource, payer, payer_type, aging_bucket, bucket_order,
    count(*) FILTER (WHERE balance > 0) AS open_claims,
    CAST(coalesce(sum(balance) FILTER (WHERE balance > 0), 0) AS DECIMAL(18, 2)) AS ar_amount,
    CAST(coalesce(sum(balance) FILTER (WHERE balance < 0), 0) AS DECIMAL(18, 2)) AS credit_amount,
    any_value(aging_basis) AS aging_basis
FROM bucketed
GROUP BY as_of_date, datasource, payer, payer_type, aging_bucket, bucket_order
