-- One row of headline KPIs per hospital and month (formulas: CDM.md).
-- Cohorts: charges, payments and collection rates by service month; denial, rejection and clean-claim
-- rates by claim month; payment lag by paid month; A/R and days in A/R at the month end.
WITH months AS (
    SELECT DISTINCT f.datasource, d.month_start AS month, last_day(d.month_start) AS month_end
    FROM gold.dim_date d
    CROSS JOIN (SELECT DISTINCT datasource FROM gold.fact_transaction) f
    CROSS JOIN params p
    WHERE d.month_start >= (SELECT min(service_month) FROM gold.fact_transaction)
      AND d.month_start <= CAST(date_trunc('month', p.as_of_date) AS DATE)
), revenue AS (
    SELECT datasource, service_month AS month, sum(charge_amount) AS gross_charges,
           sum(payment_amount) AS payments, sum(adjustment_amount) AS adjustments
    FROM gold.fact_transaction GROUP BY ALL
), charges_90 AS (
    SELECT m.datasource, m.month, sum(t.charge_amount) AS charges_90d
    FROM months m JOIN gold.fact_transaction t
      ON t.datasource = m.datasource AND t.service_date > m.month_end - INTERVAL 90 DAY
     AND t.service_date <= m.month_end
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
           count(*) FILTER (WHERE claim_status IN ('Paid', 'Approved')) AS claims_clean,
           avg(claim_lag_days) AS claim_lag_mean,
           median(claim_lag_days) AS claim_lag_median
    FROM gold.fact_claim GROUP BY ALL
), paid AS (
    SELECT datasource, CAST(date_trunc('month', paid_date) AS DATE) AS month,
           avg(payment_lag_days) AS payment_lag_mean, median(payment_lag_days) AS payment_lag_median
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
    CAST(coalesce(r.adjustments, 0) AS DECIMAL(18, 2)) AS contractual_adjustments,
    CAST(r.payments AS DOUBLE) / nullif(CAST(r.gross_charges AS DOUBLE), 0) AS gross_collection_rate,
    CAST(r.payments AS DOUBLE) / nullif(CAST(r.gross_charges - r.adjustments AS DOUBLE), 0) AS net_collection_rate,
    CAST(coalesce(a.ar_total, 0) AS DECIMAL(18, 2)) AS ar_total,
    CAST(coalesce(a.ar_over_90, 0) AS DOUBLE) / nullif(CAST(a.ar_total AS DOUBLE), 0) AS ar_over_90_share,
    CAST(a.ar_total AS DOUBLE) / nullif(CAST(tr.charges_90d AS DOUBLE) / 90, 0) AS days_in_ar,
    coalesce(s.claims_submitted, 0) AS claims_submitted,
    CAST(s.claims_denied AS DOUBLE) / nullif(s.claims_adjudicated, 0) AS denial_rate,
    CAST(coalesce(s.denied_amount, 0) AS DOUBLE) / nullif(CAST(s.adjudicated_amount AS DOUBLE), 0) AS denial_rate_amount,
    CAST(s.claims_rejected AS DOUBLE) / nullif(s.claims_submitted, 0) AS rejection_rate,
    -- first-pass outcome known: claims still pending are not yet clean or unclean
    CAST(s.claims_clean AS DOUBLE) / nullif(s.claims_adjudicated + s.claims_rejected, 0) AS clean_claim_rate,
    s.claim_lag_mean,
    -- components, so the KPIs can be re-aggregated across hospitals and months
    coalesce(s.claims_adjudicated, 0) AS claims_adjudicated,
    coalesce(s.claims_denied, 0) AS claims_denied,
    coalesce(s.claims_rejected, 0) AS claims_rejected,
    coalesce(s.claims_clean, 0) AS claims_clean,
    CAST(coalesce(s.adjudicated_amount, 0) AS DECIMAL(18, 2)) AS adjudicated_amount,
    CAST(coalesce(s.denied_amount, 0) AS DECIMAL(18, 2)) AS denied_amount,
    CAST(coalesce(a.ar_over_90, 0) AS DECIMAL(18, 2)) AS ar_over_90,
    CAST(coalesce(tr.charges_90d, 0) AS DECIMAL(18, 2)) AS charges_90d,
    coalesce(v.encounters_with_charge, 0) AS encounters_with_charge,
    CAST(coalesce(v.encounter_payments, 0) AS DECIMAL(18, 2)) AS encounter_payments,
    CAST(s.claim_lag_median AS DOUBLE) AS claim_lag_median,
    pd.payment_lag_mean,
    CAST(pd.payment_lag_median AS DOUBLE) AS payment_lag_median,
    coalesce(v.encounters, 0) AS encounters,
    CAST(v.encounter_payments AS DOUBLE) / nullif(v.encounters_with_charge, 0) AS avg_reimbursement_per_encounter,
    'charges/payments by service month; denials, rejections, clean claims and claim lag by claim month; '
        || 'payment lag by paid month; A/R at month end aged by ' || any_value(p.aging_basis) OVER () AS basis,
    'refunds; denial reasons; adjudication history (initial denial and clean-claim rates use current status)'
        AS missing_fields
FROM months m
CROSS JOIN params p
LEFT JOIN revenue r USING (datasource, month)
LEFT JOIN charges_90 tr USING (datasource, month)
LEFT JOIN ar a USING (datasource, month)
LEFT JOIN submitted s USING (datasource, month)
LEFT JOIN paid pd USING (datasource, month)
LEFT JOIN visits v USING (datasource, month)
