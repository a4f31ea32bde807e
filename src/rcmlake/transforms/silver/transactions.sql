-- Transaction lines: money as DECIMAL(18,2), codes upper-cased, payer type in one vocabulary.
SELECT
    datasource,
    trim(source_transaction_id) AS source_transaction_id,
    coalesce(trim(source_transaction_id), 'unkeyed:' || _row_hash) || '-' || datasource AS transaction_key,
    trim(source_encounter_id) || '-' || datasource AS encounter_key,
    trim(source_patient_id) || '-' || datasource AS patient_key,
    trim(source_provider_id) || '-' || datasource AS provider_key,
    trim(source_department_id) || '-' || datasource AS department_key,
    CAST(visit_date AS DATE) AS visit_date,
    CAST(service_date AS DATE) AS service_date,
    CAST(paid_date AS DATE) AS paid_date,
    trim(visit_type) AS visit_type,
    CAST(amount AS DECIMAL(18, 2)) AS amount,
    trim(amount_type) AS amount_type,
    CAST(coalesce(paid_amount, 0) AS DECIMAL(18, 2)) AS paid_amount,
    trim(claim_id) AS claim_id,
    trim(payer_id) AS payer_id,
    CASE lower(trim(line_of_business))
        WHEN 'medicare' THEN 'medicare'
        WHEN 'medicaid' THEN 'medicaid'
        WHEN 'commercial' THEN 'commercial'
        WHEN 'self-pay' THEN 'self_pay'
        ELSE 'other'
    END AS payer_type,
    lpad(upper(trim(CAST(procedure_code AS VARCHAR))), 5, '0') AS procedure_code,
    upper(trim(icd_code)) AS icd_code,
    trim(line_of_business) AS line_of_business,
    nullif(trim(medicaid_id), '') AS medicaid_id,
    nullif(trim(medicare_id), '') AS medicare_id,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
