-- Patient versions without direct identifiers (masking policy: gold carries none).
WITH v AS (
    SELECT p.*, row_number() OVER (PARTITION BY patient_key ORDER BY effective_from) AS version
    FROM silver.patients p WHERE NOT is_quarantined
)
SELECT -1 AS patient_sk, 'unknown' AS patient_key, 'unknown' AS datasource, 'unknown' AS gender,
       NULL AS birth_year, 'unknown' AS age_band, NULL AS city, NULL AS state,
       DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
UNION ALL
SELECT
    version_key(patient_key, CASE WHEN version = 1 THEN TIMESTAMP '1900-01-01' ELSE effective_from END) AS patient_sk,
    patient_key, datasource, gender,
    year(date_of_birth) AS birth_year,
    CASE
        WHEN date_diff('year', date_of_birth, p.as_of_date) < 18 THEN '0-17'
        WHEN date_diff('year', date_of_birth, p.as_of_date) < 35 THEN '18-34'
        WHEN date_diff('year', date_of_birth, p.as_of_date) < 50 THEN '35-49'
        WHEN date_diff('year', date_of_birth, p.as_of_date) < 65 THEN '50-64'
        ELSE '65+'
    END AS age_band,
    trim(split_part(address, ',', 2)) AS city,
    trim(split_part(address, ',', 3)) AS state,
    CASE WHEN version = 1 THEN DATE '1900-01-01' ELSE CAST(effective_from AS DATE) END AS valid_from,
    coalesce(CAST(effective_to AS DATE), DATE '9999-12-31') AS valid_to,
    is_current
FROM v, params p
