-- One row of headline KPIs per hospital and month (formulas and definitions: docs/KPIS.md).
-- Cohorts: charges, payments and collection rates by service month; denial, rejection and first-pass
-- rates by claim month; payment lag by paid month; A/R and days in A/R (gross) at the month end.
-- A hospital whose transaction lines are all unusable still gets its claim-based KPIs (and charges
-- from its claims); `inputs` names what each row was computed from.
WITH charges AS (
    -- by day: the 90-day windows below join a few hundred days, not every charge line
    SELECT datasource, service_date, sum(amount) AS amount FROM (
        SELECT datasource, service_date, charge_amount AS amount FROM gold.fact_transaction
        UNION ALL
        SELECT datasource, service_date, billed_amount FROM gold.fact_claim
        WHERE datasource NOT IN (SELECT DISTINCT datasource FROM gold.fact_transaction)
    ) AS lines GROUP BY datasource, service_date
), spans AS (
    SELECT datasource, min(service_date) AS first_day FROM charges GROUP BY datasource
    UNION ALL
    SELECT datasource, min(claim_date) FROM gold.fact_claim GROUP BY datasource
), months AS (
    SELECT DISTINCT s.datasource, d.month_start AS month, last_day(d.month_start) AS month_end
    FROM gold.dim_date d
    JOIN (SELECT datasource, min(first_day) AS first_day FROM spans GROUP BY datasource) s
      ON d.month_start >= CAST(date_trunc('month', s.first_day) AS DATE)
    CROSS JOIN params p
    WHERE d.month_start <= CAST(date_trunc('month', p.as_of_date) AS DATE)
), revenue AS (
    SELECT datasource, service_month AS month, sum(gross_charges) AS gross_charges,
           sum(payments) AS payments, sum(contractual_adjustments) AS adjustments, any_value(inputs) AS inputs
    FROM gold.mart_revenue_monthly GROUP BY ALL
), again AS (
    SELECT DISTINCT claim_key FROM gold.fact_remittance WHERE claim_key IS NOT NULL AND remittance_sequence > 1
), remitted AS (
    -- where payers send 835 files, the contractual adjustment of a claim is what they reported
    -- (contractual CARCs, reversals netted); a claim no remittance covers keeps the derived one
    -- (summed per claim only for claims remitted more than once, numbered past 1 by
    -- fact_remittance: grouping all 7M remittances by claim was half of this mart's time)
    SELECT c.datasource, c.service_month AS month,
           sum(coalesce(r.contractual, c.contractual_adjustment)) AS adjustments
    FROM gold.fact_claim c
    LEFT JOIN (
        SELECT claim_key, contractual_adjustment AS contractual FROM gold.fact_remittance
        WHERE claim_key IS NOT NULL AND remittance_sequence = 1 AND claim_key NOT IN (SELECT claim_key FROM again)
        UNION ALL
        SELECT claim_key, sum(contractual_adjustment) FROM gold.fact_remittance
        WHERE claim_key IN (SELECT claim_key FROM again) GROUP BY 1
    ) r ON r.claim_key = c.claim_key
    WHERE c.datasource IN (SELECT DISTINCT datasource FROM gold.fact_remittance)
    GROUP BY ALL
), charges_90 AS (
    SELECT m.datasource, m.month, sum(c.amount) AS charges_90d
    FROM months m JOIN charges c
      ON c.datasource = m.datasource AND c.service_date > m.month_end - INTERVAL 90 DAY
     AND c.service_date <= m.month_end
    GROUP BY ALL
), ar AS (
    SELECT datasource, CAST(date_trunc('month', as_of_date) AS DATE) AS month,
           sum(ar_amount) AS ar_total,
           sum(ar_amount) FILTER (WHERE bucket_order >= 4) AS ar_over_90
    FROM gold.mart_ar_aging
    WHERE as_of_date = last_day(as_of_date) OR as_of_date = (SELECT as_of_date FROM params)
    GROUP BY ALL
), submitted AS (
    SELECT datasource, CAST(date_trunc('month', claim_date) AS DATE) AS month,
           count(*) AS claims_submitted,
           count(*) FILTER (WHERE claim_status IN ('Paid', 'Approved', 'Denied')) AS claims_adjudicated,
           count(*) FILTER (WHERE is_denied) AS claims_denied,
           sum(billed_amount) FILTER (WHERE claim_status IN ('Paid', 'Approved', 'Denied')) AS adjudicated_amount,
           sum(billed_amount) FILTER (WHERE is_denied) AS denied_amount,
           count(*) FILTER (WHERE is_rejected) AS claims_rejected,
           count(*) FILTER (WHERE claim_status IN ('Paid', 'Approved')) AS claims_first_pass,
           avg(claim_lag_days) AS claim_lag_mean,
           median(claim_lag_days) AS claim_lag_median
    FROM gold.fact_claim GROUP BY ALL
), paid AS (
    SELECT datasource, CAST(date_trunc('month', paid_date) AS DATE) AS month,
           avg(payment_lag_days) AS payment_lag_mean, median(payment_lag_days) AS payment_lag_median,
           count(*) FILTER (WHERE is_payment_lag_impossible) AS claims_paid_before_claim_date
    FROM gold.fact_claim WHERE paid_date IS NOT NULL GROUP BY ALL
), visits AS (
    SELECT datasource, service_month AS month, count(*) AS encounters,
           count(*) FILTER (WHERE has_charge) AS encounters_with_charge,
           sum(payment_amount) FILTER (WHERE has_charge) AS encounter_payments
    FROM gold.fact_encounter GROUP BY ALL
)
SELECT
    m.datasource,
    m.month,
    m.month_end,
    CAST(coalesce(r.gross_charges, 0) AS DECIMAL(18, 2)) AS gross_charges,
    CAST(coalesce(r.payments, 0) AS DECIMAL(18, 2)) AS payments,
    CAST(coalesce(rm.adjustments, r.adjustments, 0) AS DECIMAL(18, 2)) AS contractual_adjustments,
    CASE WHEN rm.adjustments IS NOT NULL THEN 'payer-reported (835) where remitted, else derived'
         ELSE 'derived (billed − paid − patient responsibility)' END AS contractual_basis,
    CAST(r.payments AS DOUBLE) / nullif(CAST(r.gross_charges AS DOUBLE), 0) AS gross_collection_rate,
    CAST(r.payments AS DOUBLE)
        / nullif(CAST(r.gross_charges - coalesce(rm.adjustments, r.adjustments) AS DOUBLE), 0) AS net_collection_rate,
    CAST(coalesce(a.ar_total, 0) AS DECIMAL(18, 2)) AS ar_total,
    CAST(coalesce(a.ar_over_90, 0) AS DOUBLE) / nullif(CAST(a.ar_total AS DOUBLE), 0) AS ar_over_90_share,
    -- gross method (MGMA): billed A/R ÷ average daily gross charges of the last 90 days
    CAST(a.ar_total AS DOUBLE) / nullif(CAST(tr.charges_90d AS DOUBLE) / 90, 0) AS days_in_ar_gross,
    coalesce(s.claims_submitted, 0) AS claims_submitted,
    CAST(s.claims_denied AS DOUBLE) / nullif(s.claims_adjudicated, 0) AS denial_rate,
    CAST(coalesce(s.denied_amount, 0) AS DOUBLE) / nullif(CAST(s.adjudicated_amount AS DOUBLE), 0) AS denial_rate_amount,
    CAST(s.claims_rejected AS DOUBLE) / nullif(s.claims_submitted, 0) AS rejection_rate,
    -- first-pass yield, not MAP CL-1 (which counts claims passing scrubber edits): paid or
    -- approved ÷ claims with a first-pass outcome; claims still pending are neither yet
    CAST(s.claims_first_pass AS DOUBLE) / nullif(s.claims_adjudicated + s.claims_rejected, 0) AS first_pass_yield,
    s.claim_lag_mean,
    -- components, so the KPIs can be re-aggregated across hospitals and months
    coalesce(s.claims_adjudicated, 0) AS claims_adjudicated,
    coalesce(s.claims_denied, 0) AS claims_denied,
    coalesce(s.claims_rejected, 0) AS claims_rejected,
    coalesce(s.claims_first_pass, 0) AS claims_first_pass,
    CAST(coalesce(s.adjudicated_amount, 0) AS DECIMAL(18, 2)) AS adjudicated_amount,
    CAST(coalesce(s.denied_amount, 0) AS DECIMAL(18, 2)) AS denied_amount,
    CAST(coalesce(a.ar_over_90, 0) AS DECIMAL(18, 2)) AS ar_over_90,
    CAST(coalesce(tr.charges_90d, 0) AS DECIMAL(18, 2)) AS charges_90d,
    coalesce(v.encounters_with_charge, 0) AS encounters_with_charge,
    CAST(coalesce(v.encounter_payments, 0) AS DECIMAL(18, 2)) AS encounter_payments,
    CAST(s.claim_lag_median AS DOUBLE) AS claim_lag_median,
    pd.payment_lag_mean,
    coalesce(pd.claims_paid_before_claim_date, 0) AS claims_paid_before_claim_date,
    CAST(pd.payment_lag_median AS DOUBLE) AS payment_lag_median,
    coalesce(v.encounters, 0) AS encounters,
    CAST(v.encounter_payments AS DOUBLE) / nullif(v.encounters_with_charge, 0) AS avg_reimbursement_per_encounter,
    concat_ws('+', CASE WHEN r.inputs = 'transactions' THEN 'transactions' END,
              CASE WHEN r.inputs = 'claims' OR s.claims_submitted > 0 OR a.ar_total IS NOT NULL THEN 'claims' END,
              CASE WHEN v.encounters > 0 THEN 'encounters' END) AS inputs,
    'charges/payments by service month; denials, rejections, first-pass yield and claim lag by claim month; '
        || 'payment lag by paid month; A/R at month end aged by ' || any_value(p.aging_basis) OVER () AS basis,
    'refunds; ' || CASE WHEN rm.adjustments IS NOT NULL THEN 'adjudication history in the claims file '
        || '(mart_remittance_monthly has the 835-based denial rates)'
        ELSE 'denial reasons; adjudication history (initial denial rate and first-pass yield use current status)' END
        AS missing_fields
FROM months m
CROSS JOIN params p
LEFT JOIN revenue r ON r.datasource = m.datasource AND r.month = m.month
LEFT JOIN remitted rm ON rm.datasource = m.datasource AND rm.month = m.month
LEFT JOIN charges_90 tr ON tr.datasource = m.datasource AND tr.month = m.month
LEFT JOIN ar a ON a.datasource = m.datasource AND a.month = m.month
LEFT JOIN submitted s ON s.datasource = m.datasource AND s.month = m.month
LEFT JOIN paid pd ON pd.datasource = m.datasource AND pd.month = m.month
LEFT JOIN visits v ON v.datasource = m.datasource AND v.month = m.month
