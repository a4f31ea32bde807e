-- Charges and payments per transaction line, with the contractual adjustment of its paid claim(s).
WITH t AS (
    SELECT * FROM silver.transactions WHERE NOT is_quarantined
), adj AS (
    -- claims with an adjustment only (a third have none): the same sums, a smaller join
    SELECT transaction_key, sum(contractual_adjustment) AS adjustment
    FROM gold.fact_claim WHERE contractual_adjustment <> 0 GROUP BY transaction_key
)
SELECT
    t.transaction_key,
    t.source_transaction_id,
    t.datasource,
    coalesce(pt.patient_sk, -1) AS patient_sk,
    coalesce(pr.provider_sk, -1) AS provider_sk,
    coalesce(d.department_sk, -1) AS department_sk,
    coalesce(py.payer_sk, -1) AS payer_sk,
    coalesce(px.procedure_sk, -1) AS procedure_sk,
    coalesce(dx.diagnosis_sk, -1) AS diagnosis_sk,
    CAST(strftime(t.service_date, '%Y%m%d') AS INTEGER) AS service_date_key,
    t.encounter_key,
    t.claim_id,
    t.payer_id AS payer,
    t.payer_type,
    t.visit_type,
    t.amount_type,
    t.service_date,
    t.paid_date,
    t.amount AS charge_amount,
    t.paid_amount AS payment_amount,
    CAST(coalesce(adj.adjustment, 0) AS DECIMAL(18, 2)) AS adjustment_amount,
    CAST(date_trunc('month', t.service_date) AS DATE) AS service_month
FROM t
LEFT JOIN adj ON adj.transaction_key = t.transaction_key
LEFT JOIN gold.dim_patient pt
    ON pt.patient_key = t.patient_key AND t.service_date >= pt.valid_from AND t.service_date < pt.valid_to
LEFT JOIN gold.dim_provider pr
    ON pr.provider_key = t.provider_key AND t.service_date >= pr.valid_from AND t.service_date < pr.valid_to
LEFT JOIN gold.dim_department d ON d.department_key = t.department_key
LEFT JOIN gold.dim_payer py ON py.payer_id = t.payer_id
LEFT JOIN gold.dim_procedure px
    ON px.cpt_code = t.procedure_code AND t.service_date >= px.valid_from AND t.service_date < px.valid_to
LEFT JOIN gold.dim_diagnosis dx
    ON dx.icd_code = t.icd_code AND t.service_date >= dx.valid_from AND t.service_date < dx.valid_to
