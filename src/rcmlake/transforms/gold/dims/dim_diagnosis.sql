WITH v AS (
    SELECT c.*, row_number() OVER (PARTITION BY icd_code ORDER BY effective_from) AS version
    FROM silver.icd_codes c WHERE NOT is_quarantined
)
SELECT -1 AS diagnosis_sk, 'unknown' AS icd_code, 'ICD-10-CM' AS code_type, 'Unknown diagnosis' AS description,
       DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
UNION ALL
SELECT version_key(icd_code, CASE WHEN version = 1 THEN TIMESTAMP '1900-01-01' ELSE effective_from END), icd_code, code_type, description,
       CASE WHEN version = 1 THEN DATE '1900-01-01' ELSE CAST(effective_from AS DATE) END,
       coalesce(CAST(effective_to AS DATE), DATE '9999-12-31'), is_current
FROM v
