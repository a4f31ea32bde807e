-- ICD-10-CM codes: upper-cased, descriptions trimmed.
SELECT
    datasource,
    upper(trim(icd_code)) AS icd_code,
    coalesce(code_type, 'ICD-10-CM') AS code_type,
    trim(description) AS description,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
WHERE code_type IS DISTINCT FROM 'NOT_FOUND'  -- remembered misses of the API, not codes
