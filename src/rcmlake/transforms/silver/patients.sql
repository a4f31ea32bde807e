-- Patients; the literal string 'NULL' some EMRs write into name columns means missing.
SELECT
    datasource,
    trim(source_patient_id) AS source_patient_id,
    coalesce(trim(source_patient_id), 'unkeyed:' || _row_hash) || '-' || datasource AS patient_key,
    nullif(trim(first_name), 'NULL') AS first_name,
    nullif(trim(middle_name), 'NULL') AS middle_name,
    nullif(trim(last_name), 'NULL') AS last_name,
    nullif(trim(ssn), '') AS ssn,
    nullif(trim(phone), '') AS phone,
    CASE lower(trim(gender))
        WHEN 'male' THEN 'male' WHEN 'm' THEN 'male'
        WHEN 'female' THEN 'female' WHEN 'f' THEN 'female'
        ELSE 'unknown'
    END AS gender,
    CAST(date_of_birth AS DATE) AS date_of_birth,
    nullif(trim(address), '') AS address,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    _batch_id,
    _row_hash
FROM stage
