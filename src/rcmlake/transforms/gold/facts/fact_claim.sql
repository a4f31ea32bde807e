-- One row per claim. Allowed = paid + patient responsibility once adjudicated payable; the
-- contractual adjustment is what a paid claim leaves of the billed amount beyond both.
-- Paid date (docs/KPIS.md): a Paid claim's transaction PaidDate, else the claim's last-modified
-- date (when the payer reported it paid); `paid_date_source` says which. A paid date before the
-- claim date is impossible: kept (the claim is not in A/R), flagged, and left out of payment lag.
WITH c AS (
    SELECT * FROM silver.claims WHERE NOT is_quarantined
), t AS (
    SELECT transaction_key, paid_date, procedure_code, icd_code FROM silver.transactions WHERE NOT is_quarantined
), base AS (
    SELECT
        c.*,
        t.procedure_code, t.icd_code,
        CASE WHEN c.claim_status = 'Paid' THEN coalesce(t.paid_date, CAST(c.source_modified_at AS DATE)) END
            AS paid_date_resolved,
        CASE WHEN c.claim_status = 'Paid' THEN
            CASE WHEN t.paid_date IS NOT NULL THEN 'transaction' ELSE 'claim_modified' END
        END AS paid_date_source,
        coalesce(c.deductible, 0) + coalesce(c.coinsurance, 0) + coalesce(c.copay, 0) AS patient_resp
    FROM c LEFT JOIN t ON t.transaction_key = c.transaction_key
)
SELECT
    b.claim_key,
    b.claim_id,
    b.datasource,
    coalesce(pt.patient_sk, -1) AS patient_sk,
    coalesce(pr.provider_sk, -1) AS provider_sk,
    coalesce(d.department_sk, -1) AS department_sk,
    coalesce(py.payer_sk, -1) AS payer_sk,
    coalesce(px.procedure_sk, -1) AS procedure_sk,
    coalesce(dx.diagnosis_sk, -1) AS diagnosis_sk,
    b.transaction_key,
    b.encounter_key,
    b.payer_id AS payer,
    b.payer_type,
    b.service_date,
    b.claim_date AS submitted_date,
    b.claim_date,
    CASE WHEN b.claim_status IN ('Paid', 'Approved', 'Denied') THEN CAST(b.source_modified_at AS DATE) END
        AS adjudicated_date,
    b.paid_date_resolved AS paid_date,
    b.paid_date_source,
    b.claim_amount AS billed_amount,
    CAST(coalesce(b.paid_amount, 0) AS DECIMAL(18, 2)) AS paid_amount,
    CAST(b.patient_resp AS DECIMAL(18, 2)) AS patient_responsibility,
    CAST(CASE WHEN b.claim_status IN ('Paid', 'Approved') THEN coalesce(b.paid_amount, 0) + b.patient_resp END
        AS DECIMAL(18, 2)) AS allowed_amount,
    CAST(CASE WHEN b.claim_status = 'Paid'
        THEN greatest(b.claim_amount - coalesce(b.paid_amount, 0) - b.patient_resp, 0) ELSE 0 END
        AS DECIMAL(18, 2)) AS contractual_adjustment,
    b.claim_status,
    b.claim_status = 'Denied' AS is_denied,
    b.claim_status = 'Rejected' AS is_rejected,
    CASE WHEN b.claim_status = 'Denied' THEN 'not provided by source' END AS denial_reason,
    date_diff('day', b.service_date, b.claim_date) AS claim_lag_days,
    CASE WHEN b.paid_date_resolved >= b.claim_date THEN date_diff('day', b.claim_date, b.paid_date_resolved) END
        AS payment_lag_days,
    coalesce(b.paid_date_resolved < b.claim_date, false) AS is_payment_lag_impossible,
    CAST(date_trunc('month', b.service_date) AS DATE) AS service_month
FROM base b
LEFT JOIN gold.dim_patient pt
    ON pt.patient_key = b.patient_key AND b.service_date >= pt.valid_from AND b.service_date < pt.valid_to
LEFT JOIN gold.dim_provider pr
    ON pr.provider_key = b.provider_key AND b.service_date >= pr.valid_from AND b.service_date < pr.valid_to
LEFT JOIN gold.dim_department d ON d.department_key = b.department_key
LEFT JOIN gold.dim_payer py ON py.payer_id = b.payer_id
LEFT JOIN gold.dim_procedure px
    ON px.cpt_code = b.procedure_code AND b.service_date >= px.valid_from AND b.service_date < px.valid_to
LEFT JOIN gold.dim_diagnosis dx
    ON dx.icd_code = b.icd_code AND b.service_date >= dx.valid_from AND b.service_date < dx.valid_to
