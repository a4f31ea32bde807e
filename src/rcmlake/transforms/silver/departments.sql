-- One row per department per datasource.
SELECT
    datasource,
    trim(source_department_id) AS source_department_id,
    coalesce(trim(source_department_id), 'unkeyed:' || _row_hash) || '-' || datasource AS department_key,
    trim(name) AS name,
    _ingested_at AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
