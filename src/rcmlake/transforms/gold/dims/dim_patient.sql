-- Patient versions without direct identifiers (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)): no name,
-- street, city, SSN, phone or date of birth; birth year, state and the first three ZIP digits only,
-- and '000' for the three-digit ZIP areas of 20,000 people or fewer (HHS list, 2000 census).
-- Age is in whole years at the as-of date (a birthday later in the year has not happened yet).
WITH v AS (
    SELECT p.*, row_number() OVER (PARTITION BY patient_key ORDER BY effective_from) AS version,
           year(q.as_of_date) - year(p.date_of_birth)
               - CASE WHEN month(q.as_of_date) < month(p.date_of_birth)
                        OR (month(q.as_of_date) = month(p.date_of_birth) AND day(q.as_of_date) < day(p.date_of_birth))
                      THEN 1 ELSE 0 END AS age
    FROM silver.patients p, params q WHERE NOT is_quarantined
)
SELECT -1 AS patient_sk, 'unknown' AS patient_key, 'unknown' AS datasource, 'unknown' AS gender,
       CAST(NULL AS BIGINT) AS birth_year, 'unknown' AS age_band, CAST(NULL AS VARCHAR) AS state, CAST(NULL AS VARCHAR) AS zip3,
       DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
UNION ALL
SELECT
    version_key(patient_key, CASE WHEN version = 1 THEN TIMESTAMP '1900-01-01' ELSE effective_from END) AS patient_sk,
    patient_key, datasource, gender,
    year(date_of_birth) AS birth_year,
    CASE
        WHEN age < 18 THEN '0-17'
        WHEN age < 35 THEN '18-34'
        WHEN age < 50 THEN '35-49'
        WHEN age < 65 THEN '50-64'
        WHEN age >= 65 THEN '65+'
        ELSE 'unknown'
    END AS age_band,
    state,
    CASE
        WHEN zip_code IS NULL THEN NULL
        WHEN left(zip_code, 3) IN ('036', '059', '063', '102', '203', '556', '692', '790', '821', '823', '830',
                                   '831', '878', '879', '884', '890', '893') THEN '000'
        ELSE left(zip_code, 3)
    END AS zip3,
    CASE WHEN version = 1 THEN DATE '1900-01-01' ELSE CAST(effective_from AS DATE) END AS valid_from,
    coalesce(CAST(effective_to AS DATE), DATE '9999-12-31') AS valid_to,
    is_current
FROM v
