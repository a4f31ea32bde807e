-- Payers seen on transactions or claims; payer_type from the most frequent classification.
WITH seen AS (
    SELECT payer_id, payer_type FROM silver.transactions WHERE NOT is_quarantined AND payer_id IS NOT NULL
    UNION ALL
    SELECT payer_id, payer_type FROM silver.claims WHERE NOT is_quarantined AND payer_id IS NOT NULL
), ranked AS (
    SELECT payer_id, payer_type, count(*) AS n,
           row_number() OVER (PARTITION BY payer_id ORDER BY count(*) DESC, payer_type) AS rn
    FROM seen GROUP BY payer_id, payer_type
)
SELECT -1 AS payer_sk, 'unknown' AS payer_id, 'other' AS payer_type
UNION ALL
SELECT surrogate_key(payer_id) AS payer_sk, payer_id, payer_type
FROM ranked WHERE rn = 1
