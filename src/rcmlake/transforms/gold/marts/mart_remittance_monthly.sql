-- Remittance KPIs (docs/KPIS.md, after HFMA's MAP Keys and Claim Integrity Task Force) by
-- datasource and the month of each claim's first remittance. Per claim: the first remittance is
-- its initial adjudication, the last its final one; reversals (CLP02 = 22) are left out, and
-- claims denied as exact duplicates (CARC 18) count in neither side of a denial rate.
WITH keyed AS (
    SELECT *, coalesce(claim_key, remittance_claim_key) AS k, remittance_sequence AS n
    FROM gold.fact_remittance
), repeated AS (
    -- claims with more than one remittance (reversals included): fact_remittance numbers a
    -- claim's remittances 1, 2 …, so these are the keys of a row numbered past 1. Only their
    -- rows are grouped: at scale 10, grouping all 7M claims with these aggregates was 9.1 s
    -- of CPU, and 1,679 rows repeat a claim
    SELECT DISTINCT k FROM keyed WHERE n > 1
), seq AS (
    -- a claim's remittances in order: fact_remittance numbers them (reversals included) in
    -- the order of payment date and key, which orders the ones kept here the same way
    SELECT * FROM keyed WHERE NOT is_reversal AND k IN (SELECT k FROM repeated)
), single AS (
    -- a claim remitted once: its one row is its first and its last remittance
    SELECT
        k,
        datasource,
        payment_month AS month,
        is_duplicate AS duplicate,
        is_denied AS denied_initial,
        is_denied AS denied_final,
        NOT is_denied AND payment_amount > 0 AS first_pass,
        charge_amount AS charge,
        charge_amount - payment_amount AS unpaid_final,
        days_claim_to_remittance AS days_to_remittance,
        CAST(NULL AS BIGINT) AS days_to_resolution,
        claim_key IS NOT NULL AS matched,
        payment_amount AS paid,
        contractual_adjustment AS contractual
    FROM keyed WHERE NOT is_reversal AND n = 1 AND k NOT IN (SELECT k FROM repeated)
), per_claim AS (
    SELECT * FROM single
    UNION ALL
    SELECT
        k,
        any_value(datasource) AS datasource,
        arg_min(payment_month, n) AS month,
        arg_min(is_duplicate, n) AS duplicate,
        arg_min(is_denied, n) AS denied_initial,
        arg_max(is_denied, n) AS denied_final,
        arg_min(NOT is_denied AND payment_amount > 0, n) AS first_pass,
        arg_min(charge_amount, n) AS charge,
        arg_max(charge_amount - payment_amount, n) AS unpaid_final,
        arg_min(days_claim_to_remittance, n) AS days_to_remittance,
        CASE WHEN arg_min(is_denied, n) AND NOT arg_max(is_denied, n)
             THEN date_diff('day', min(payment_date), max(payment_date)) END AS days_to_resolution,
        bool_or(claim_key IS NOT NULL) AS matched,
        sum(payment_amount) AS paid,
        sum(contractual_adjustment) AS contractual
    FROM seq GROUP BY k
), totals AS (
    -- each aggregate once (Sail plans an aggregate written twice as two equal columns)
    SELECT
        datasource,
        month,
        count(*) AS remitted_claims,
        count(*) FILTER (WHERE NOT duplicate) AS claims_adjudicated,
        count(*) FILTER (WHERE duplicate) AS duplicate_claims,
        count(*) FILTER (WHERE denied_initial AND NOT duplicate) AS claims_denied_initial,
        count(*) FILTER (WHERE denied_final AND NOT duplicate) AS claims_denied_final,
        count(*) FILTER (WHERE first_pass AND NOT duplicate) AS claims_first_pass,
        sum(charge) FILTER (WHERE NOT duplicate) AS charge_adjudicated,
        coalesce(sum(charge) FILTER (WHERE denied_initial AND NOT duplicate), 0) AS charge_denied_initial,
        coalesce(sum(unpaid_final) FILTER (WHERE denied_final AND NOT duplicate), 0) AS writeoffs,
        sum(charge) - sum(contractual) AS npsr,
        sum(paid) AS paid,
        sum(contractual) AS contractual,
        avg(days_to_resolution) AS days_to_resolution,
        avg(days_to_remittance) AS days_to_remittance,
        count(*) FILTER (WHERE NOT matched) AS unmatched_remittances
    FROM per_claim
    GROUP BY datasource, month
)
SELECT
    datasource,
    month,
    remitted_claims,
    claims_adjudicated,
    duplicate_claims,
    claims_denied_initial,
    claims_denied_final,
    CAST(charge_adjudicated AS DECIMAL(18, 2)) AS charges_adjudicated,
    CAST(charge_denied_initial AS DECIMAL(18, 2)) AS charges_denied_initial,
    round(claims_denied_initial / nullif(claims_adjudicated, 0), 4) AS initial_denial_rate,
    round(CAST(charge_denied_initial AS DOUBLE) / nullif(CAST(charge_adjudicated AS DOUBLE), 0), 4)
        AS initial_denial_rate_dollars,
    round(claims_denied_final / nullif(claims_adjudicated, 0), 4) AS final_denial_rate,
    CAST(writeoffs AS DECIMAL(18, 2)) AS denial_writeoffs,
    CAST(npsr AS DECIMAL(18, 2)) AS net_patient_service_revenue,
    round(CAST(writeoffs AS DOUBLE) / nullif(CAST(npsr AS DOUBLE), 0), 4) AS denial_writeoff_share_of_npsr,
    round(claims_first_pass / nullif(claims_adjudicated, 0), 4) AS first_pass_yield,
    CAST(paid AS DECIMAL(18, 2)) AS payments,
    CAST(contractual AS DECIMAL(18, 2)) AS contractual_adjustments_reported,
    round(days_to_resolution, 1) AS avg_days_to_resolution,
    round(days_to_remittance, 1) AS avg_days_claim_to_remittance,
    unmatched_remittances
FROM totals
