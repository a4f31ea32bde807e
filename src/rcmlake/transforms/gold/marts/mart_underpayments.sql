-- Service lines paid below the payer's usual payment for the same procedure: the median paid
-- amount of that payer and CPT over lines it paid (at least three of them), less the
-- `underpayment_threshold` share (config, default 10%). A line paid nothing is a denial, not here.
WITH lines AS (
    SELECT l.remittance_line_key, l.procedure_code, l.charge_amount, l.payment_amount, l.allowed_amount,
           f.datasource, f.payer, f.payer_sk, f.claim_key, f.payment_date, f.payment_month
    FROM silver.remittance_lines l JOIN gold.fact_remittance f USING (remittance_claim_key)
    WHERE NOT l.is_quarantined AND NOT f.is_reversal
), usual AS (
    SELECT payer, procedure_code, median(payment_amount) AS usual_payment, count(*) AS lines_paid
    FROM lines WHERE payment_amount > 0 GROUP BY ALL HAVING count(*) >= 3
)
SELECT
    l.*,
    CAST(u.usual_payment AS DECIMAL(18, 2)) AS usual_payment,
    u.lines_paid AS usual_basis_lines,
    CAST(u.usual_payment - l.payment_amount AS DECIMAL(18, 2)) AS shortfall
FROM lines l JOIN usual u USING (payer, procedure_code), params p
WHERE l.payment_amount > 0 AND l.payment_amount < u.usual_payment * (1 - p.underpayment_threshold)
