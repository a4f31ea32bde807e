-- Average reimbursement per encounter with a charge, by payer type and encounter type.
SELECT
    datasource, payer_type, encounter_type, service_month,
    count(*) AS encounters_with_charge,
    CAST(sum(payment_amount) AS DECIMAL(18, 2)) AS payments,
    CAST(sum(payment_amount) AS DOUBLE) / count(*) AS avg_reimbursement_per_encounter
FROM gold.fact_encounter
WHERE has_charge
GROUP BY ALL
