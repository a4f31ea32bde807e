-- At the as-of date: claims grouped by age (service to payment if paid, else to the as-of date);
-- collection rate = payments on those claims ÷ their billed amount.
WITH aged AS (
    SELECT f.datasource, f.billed_amount,
           CASE WHEN f.paid_date <= p.as_of_date THEN f.paid_amount ELSE 0 END AS paid,
           date_diff('day', CASE WHEN p.aging_basis = 'claim_date' THEN f.claim_date ELSE f.service_date END,
                     CASE WHEN f.paid_date <= p.as_of_date THEN f.paid_date ELSE p.as_of_date END) AS age_days,
           p.as_of_date, p.aging_basis
    FROM gold.fact_claim f, params p
    WHERE f.claim_date <= p.as_of_date
)
SELECT
    as_of_date, datasource,
    CASE WHEN age_days <= 30 THEN '0-30' WHEN age_days <= 60 THEN '31-60' WHEN age_days <= 90 THEN '61-90'
         WHEN age_days <= 120 THEN '91-120' ELSE '120+' END AS aging_bucket,
    CASE WHEN age_days <= 30 THEN 1 WHEN age_days <= 60 THEN 2 WHEN age_days <= 90 THEN 3
         WHEN age_days <= 120 THEN 4 ELSE 5 END AS bucket_order,
    count(*) AS claims,
    CAST(sum(billed_amount) AS DECIMAL(18, 2)) AS billed_amount,
    CAST(sum(paid) AS DECIMAL(18, 2)) AS payments,
    CAST(sum(paid) AS DOUBLE) / nullif(CAST(sum(billed_amount) AS DOUBLE), 0) AS collection_rate,
    any_value(aging_basis) AS aging_basis
FROM aged
GROUP BY ALL
