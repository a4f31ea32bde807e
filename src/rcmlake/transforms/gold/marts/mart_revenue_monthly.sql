-- Service-month cohorts: what was charged, what has been collected on it so far, what was adjusted.
-- Refunds are not in the sources, so net collection is (payments) ÷ (charges − adjustments).
-- A hospital with no usable transaction lines (all quarantined, or no transaction table) is
-- computed from its claims instead (billed, paid, contractual adjustment); `inputs` says which.
WITH lines AS (
    SELECT datasource, payer, payer_type, service_month,
           sum(charge_amount) AS gross_charges, sum(payment_amount) AS payments,
           sum(adjustment_amount) AS contractual_adjustments, count(*) AS transactions,
           'transactions' AS inputs
    FROM gold.fact_transaction GROUP BY datasource, payer, payer_type, service_month
), claims_only AS (
    SELECT datasource, payer, payer_type, service_month,
           sum(billed_amount), sum(paid_amount), sum(contractual_adjustment), count(*), 'claims'
    FROM gold.fact_claim
    WHERE datasource NOT IN (SELECT DISTINCT datasource FROM gold.fact_transaction)
    GROUP BY datasource, payer, payer_type, service_month
), m AS (
    SELECT * FROM lines UNION ALL SELECT * FROM claims_only
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
    inputs,
    'service_date cohort' AS basis,
    'refunds' AS missing_fields
FROM m
