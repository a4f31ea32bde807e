-- 835 payments (BPR/TRN with payer and payee), with what balances them:
-- BPR02 (total paid) = Σ CLP04 − Σ PLB amounts.
SELECT
    s.datasource,
    s.payment_key,
    trim(s.trace_number) AS trace_number,
    s.total_payment_amount,
    trim(s.credit_debit_flag) AS credit_debit_flag,
    trim(s.payment_method) AS payment_method,
    trim(s.payment_format) AS payment_format,
    s.payment_date,
    trim(s.payer_name) AS payer_name,
    trim(coalesce(s.payer_identifier, s.payer_id)) AS payer_identifier,
    trim(s.payee_name) AS payee_name,
    trim(s.payee_id) AS payee_id,
    CAST(coalesce((SELECT sum(c.payment_amount) FROM silver.remittance_claims c
                   WHERE c.payment_key = s.payment_key), 0) AS DECIMAL(18, 2)) AS claims_paid_total,
    CAST(coalesce((SELECT sum(p.amount) FROM silver.provider_adjustments p
                   WHERE p.payment_key = s.payment_key), 0) AS DECIMAL(18, 2)) AS provider_adjustment_total,
    s.source_file,
    CAST(s.source_modified_at AS TIMESTAMP) AS source_modified_at,
    s.cast_errors,
    s._batch_id,
    s._row_hash
FROM stage s
