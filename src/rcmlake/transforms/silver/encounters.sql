-- Encounters with every foreign key rewritten to hospital-qualified surrogate keys.
SELECT
    datasource,
    trim(source_encounter_id) AS source_encounter_id,
    coalesce(trim(source_encounter_id), 'unkeyed:' || _row_hash) || '-' || datasource AS encounter_key,
    trim(source_patient_id) || '-' || datasource AS patient_key,
    trim(source_provider_id) || '-' || datasource AS provider_key,
    trim(source_department_id) || '-' || datasource AS department_key,
    CAST(encounter_date AS DATE) AS encounter_date,
    trim(encounter_type) AS encounter_type,
    lpad(upper(trim(CAST(procedure_code AS VARCHAR))), 5, '0') AS procedure_code,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
