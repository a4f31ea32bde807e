-- Service lines paid below the payer's usual allowed amount for the same procedure: what the
-- payer paid plus the patient's share (PR adjustments of the line) is under the payer's median
-- allowed amount for that CPT (AMT*B6 where the 835 gives it, else paid + PR; at least three
-- lines) less `underpayment_threshold` (config, default 10%). A line paid nothing is a denial.
WITH pr AS (
    SELECT remittance_line_key, sum(amount) AS patient_share
    FROM silver.claim_adjustments WHERE group_code = 'PR' AND NOT is_quarantined GROUP BY 1
), lines AS (
    SELECT l.remittance_line_key, l.procedure_code, l.charge_amount, l.payment_amount, l.allowed_amount,
           coalesce(pr.patient_share, 0) AS patient_share,
           f.datasource, f.payer, f.payer_sk, f.claim_key, f.payment_date, f.payment_month
    FROM silver.remittance_lines l
    JOIN gold.fact_remittance f ON f.remittance_claim_key = l.remittance_claim_key
    LEFT JOIN pr ON pr.remittance_line_key = l.remittance_line_key
    WHERE NOT l.is_quarantined AND NOT f.is_reversal
), usual AS (
    SELECT payer, procedure_code,
           median(coalesce(allowed_amount, payment_amount + patient_share)) AS usual_allowed,
           count(*) AS lines_paid
    FROM lines WHERE payment_amount > 0 GROUP BY ALL HAVING count(*) >= 3
)
SELECT
    l.*,
    CAST(u.usual_allowed AS DECIMAL(18, 2)) AS usual_allowed,
    u.lines_paid AS usual_basis_lines,
    CAST(u.usual_allowed - l.payment_amount - l.patient_share AS DECIMAL(18, 2)) AS shortfall
FROM lines l JOIN usual u ON u.payer = l.payer AND u.procedure_code = l.procedure_code, params p
WHERE l.payment_amount > 0
  AND l.payment_amount + l.patient_share < u.usual_allowed * (1 - p.underpayment_threshold)
