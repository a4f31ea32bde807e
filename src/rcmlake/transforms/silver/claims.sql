-- Claims from the insurer files. A malformed row keeps its claim id from the raw line so a
-- corrected re-send replaces it. Patient responsibility = deductible + coinsurance + copay.
SELECT
    datasource,
    coalesce(trim(source_claim_id), trim(split_part(malformed_line, ',', 1), '"')) AS source_claim_id,
    coalesce(trim(source_claim_id), trim(split_part(malformed_line, ',', 1), '"'), 'unkeyed:' || _row_hash)
        || '-' || datasource AS claim_key,
    trim(source_claim_id) AS claim_id,
    trim(source_transaction_id) || '-' || datasource AS transaction_key,
    trim(source_patient_id) || '-' || datasource AS patient_key,
    trim(source_encounter_id) || '-' || datasource AS encounter_key,
    trim(source_provider_id) || '-' || datasource AS provider_key,
    trim(source_department_id) || '-' || datasource AS department_key,
    CAST(service_date AS DATE) AS service_date,
    CAST(claim_date AS DATE) AS claim_date,
    trim(payer_id) AS payer_id,
    CAST(claim_amount AS DECIMAL(18, 2)) AS claim_amount,
    CAST(paid_amount AS DECIMAL(18, 2)) AS paid_amount,
    trim(claim_status) AS claim_status,
    CASE
        WHEN lower(trim(payer_id)) = 'medicare' THEN 'medicare'
        WHEN lower(trim(payer_id)) = 'medicaid' THEN 'medicaid'
        WHEN lower(trim(payer_type_source)) IN ('self-pay', 'self pay', 'selfpay') THEN 'self_pay'
        WHEN lower(trim(payer_type_source)) IN ('private', 'commercial') THEN 'commercial'
        ELSE 'other'
    END AS payer_type,
    CAST(deductible AS DECIMAL(18, 2)) AS deductible,
    CAST(coinsurance AS DECIMAL(18, 2)) AS coinsurance,
    CAST(copay AS DECIMAL(18, 2)) AS copay,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    malformed_line,
    _batch_id,
    _row_hash
FROM stage
