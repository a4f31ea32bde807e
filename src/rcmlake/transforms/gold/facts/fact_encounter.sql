-- One row per encounter with the charges and payments of its transaction lines.
WITH e AS (
    SELECT * FROM silver.encounters WHERE NOT is_quarantined
), money AS (
    SELECT encounter_key, sum(charge_amount) AS charge_amount, sum(payment_amount) AS payment_amount,
           min(payer_sk) AS payer_sk, min(payer_type) AS payer_type
    FROM gold.fact_transaction GROUP BY encounter_key
)
SELECT
    e.encounter_key,
    e.source_encounter_id,
    e.datasource,
    coalesce(pt.patient_sk, -1) AS patient_sk,
    coalesce(pr.provider_sk, -1) AS provider_sk,
    coalesce(d.department_sk, -1) AS department_sk,
    coalesce(px.procedure_sk, -1) AS procedure_sk,
    coalesce(m.payer_sk, -1) AS payer_sk,
    coalesce(m.payer_type, 'other') AS payer_type,
    e.encounter_date,
    e.encounter_type,
    coalesce(m.charge_amount, 0) > 0 AS has_charge,
    CAST(coalesce(m.charge_amount, 0) AS DECIMAL(18, 2)) AS charge_amount,
    CAST(coalesce(m.payment_amount, 0) AS DECIMAL(18, 2)) AS payment_amount,
    CAST(date_trunc('month', e.encounter_date) AS DATE) AS service_month
FROM e
LEFT JOIN money m ON m.encounter_key = e.encounter_key
LEFT JOIN gold.dim_patient pt
    ON pt.patient_key = e.patient_key AND e.encounter_date >= pt.valid_from AND e.encounter_date < pt.valid_to
LEFT JOIN gold.dim_provider pr
    ON pr.provider_key = e.provider_key AND e.encounter_date >= pr.valid_from AND e.encounter_date < pr.valid_to
LEFT JOIN gold.dim_department d ON d.department_key = e.department_key
LEFT JOIN gold.dim_procedure px
    ON px.cpt_code = e.procedure_code AND e.encounter_date >= px.valid_from AND e.encounter_date < px.valid_to
