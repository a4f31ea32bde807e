-- Claim Adjustment Reason Codes, with the denial category rcmlake reports them under.
SELECT
    datasource,
    upper(trim(carc_code)) AS carc_code,
    trim(description) AS description,
    lower(trim(category)) AS category,
    start_date,
    stop_date,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
