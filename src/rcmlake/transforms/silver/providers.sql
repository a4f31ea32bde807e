-- Providers; NPI kept as a 10-character string (a 32-bit integer overflows it).
SELECT
    datasource,
    trim(source_provider_id) AS source_provider_id,
    coalesce(trim(source_provider_id), 'unkeyed:' || _row_hash) || '-' || datasource AS provider_key,
    nullif(trim(first_name), 'NULL') AS first_name,
    nullif(trim(last_name), 'NULL') AS last_name,
    trim(specialization) AS specialization,
    trim(source_department_id) || '-' || datasource AS department_key,
    lpad(CAST(CAST(npi AS BIGINT) AS VARCHAR), 10, '0') AS npi,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
