-- Remittance Advice Remark Codes, with the category of what they explain.
SELECT
    datasource,
    upper(trim(rarc_code)) AS rarc_code,
    trim(description) AS description,
    lower(trim(category)) AS category,
    start_date,
    stop_date,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
