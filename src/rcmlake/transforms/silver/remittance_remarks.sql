-- RARC remark codes of 835 remittances (LQ for lines, MOA/MIA for claims).
SELECT
    datasource,
    remark_key,
    remittance_claim_key,
    remittance_line_key,
    level,
    upper(trim(remark_code)) AS remark_code,
    source_segment,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
