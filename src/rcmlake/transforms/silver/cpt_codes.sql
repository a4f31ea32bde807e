-- CPT codes: upper-cased, descriptions trimmed, status spelled one way ('No change' = 'No Change').
SELECT
    datasource,
    upper(trim(cpt_code)) AS cpt_code,
    trim(category) AS category,
    trim(description) AS description,
    CASE lower(trim(status))
        WHEN 'no change' THEN 'No Change'
        WHEN 'added' THEN 'Added'
        WHEN 'deleted' THEN 'Deleted'
        ELSE trim(status)
    END AS status,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
