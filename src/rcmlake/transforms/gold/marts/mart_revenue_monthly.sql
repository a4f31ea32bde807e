-- Service-month cohorts: what was charged, what has been collected on it so far, what was adjusted.
-- Refunds are not in the sources, so net collection is (payments) ÷ (charges − adjustments).
WITH m AS (
    SELECT datasource, payer, payer_type, service_month,
           sum(charge_amount) AS gross_charges, sum(payment_amount) AS payments,
           sum(adjustment_amount) AS contractual_adjustments, count(*) AS transactions
    FROM gold.fact_transaction GROUP BY datasource, payer, payer_type, service_month
)
SELECT
    datasource, payer, payer_type, service_month,
    CAST(gross_charges AS DECIMAL(18, 2)) AS gross_charges,
    CAST(payments AS DECIMAL(18, 2)) AS payments,
    CAST(contractual_adjustments AS DECIMAL(18, 2)) AS contractual_adjustments,
    transactions,
    CAST(payments AS DOUBLE) / nullif(CAST(gross_charges AS DOUBLE), 0) AS gross_collection_rate,
    CAST(payments AS DOUBLE) / nullif(CAST(gross_charges - contractual_adjustments AS DOUBLE), 0)
        AS net_collection_rate,
    -- the decimal sum is exact; a DOUBLE sum would depend on the order threads add in
    CAST(gross_charges AS DOUBLE)
        / nullif(CAST(sum(gross_charges) OVER (PARTITION BY datasource, service_month) AS DOUBLE), 0)
        AS payer_share_of_charges,
    'service_date cohort' AS basis,
    'refunds' AS missing_fields
FROM m
