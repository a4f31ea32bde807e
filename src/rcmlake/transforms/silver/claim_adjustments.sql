-- CAS adjustments of 835 remittances, one row per group/reason/amount triplet (claim or line).
SELECT
    datasource,
    adjustment_key,
    remittance_claim_key,
    remittance_line_key,
    level,
    upper(trim(group_code)) AS group_code,
    upper(trim(reason_code)) AS reason_code,
    amount,
    quantity,
    source_file,
    CAST(segment AS BIGINT) AS segment,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
