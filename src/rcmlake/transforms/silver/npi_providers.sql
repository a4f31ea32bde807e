-- NPPES registry records; NPI stays a string.
SELECT
    datasource,
    trim(npi) AS npi,
    enumeration_type,
    nullif(trim(first_name), '') AS first_name,
    nullif(trim(last_name), '') AS last_name,
    nullif(trim(credential), '') AS credential,
    nullif(trim(organization_name), '') AS organization_name,
    taxonomy_code,
    taxonomy,
    status,
    TRY_CAST(last_updated AS DATE) AS last_updated,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
WHERE status IS DISTINCT FROM 'NOT_FOUND'  -- remembered misses of the registry
