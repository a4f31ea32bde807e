WITH v AS (
    SELECT c.*, row_number() OVER (PARTITION BY cpt_code ORDER BY effective_from) AS version
    FROM silver.cpt_codes c WHERE NOT is_quarantined
)
SELECT -1 AS procedure_sk, 'unknown' AS cpt_code, 'Unknown' AS category, 'Unknown procedure' AS description,
       CAST(NULL AS VARCHAR) AS status, DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
UNION ALL
SELECT version_key(cpt_code, CASE WHEN version = 1 THEN TIMESTAMP '1900-01-01' ELSE effective_from END), cpt_code, category, description,
       status,
       CASE WHEN version = 1 THEN DATE '1900-01-01' ELSE CAST(effective_from AS DATE) END,
       coalesce(CAST(effective_to AS DATE), DATE '9999-12-31'), is_current
FROM v
