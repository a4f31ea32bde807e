-- 835 provider-level adjustments (PLB), one row per reason and amount.
SELECT
    datasource,
    provider_adjustment_key,
    payment_key,
    trim(provider_id) AS provider_id,
    upper(trim(reason_code)) AS reason_code,
    trim(reference_id) AS reference_id,
    amount,
    fiscal_period_date,
    source_file,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM stage
