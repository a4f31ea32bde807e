-- Provider versions; the first version is valid from the beginning of time so early facts find it.
WITH v AS (
    SELECT p.*, row_number() OVER (PARTITION BY provider_key ORDER BY effective_from) AS version
    FROM silver.providers p WHERE NOT is_quarantined
)
SELECT -1 AS provider_sk, 'unknown' AS provider_key, 'unknown' AS datasource, CAST(NULL AS VARCHAR) AS source_provider_id,
       CAST(NULL AS VARCHAR) AS first_name, CAST(NULL AS VARCHAR) AS last_name, CAST(NULL AS VARCHAR) AS specialization, 'unknown' AS department_key, CAST(NULL AS VARCHAR) AS npi,
       CAST(NULL AS VARCHAR) AS npi_credential, CAST(NULL AS VARCHAR) AS npi_taxonomy, CAST(NULL AS VARCHAR) AS npi_status,
       DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
UNION ALL
SELECT
    version_key(v.provider_key, CASE WHEN v.version = 1 THEN TIMESTAMP '1900-01-01' ELSE v.effective_from END) AS provider_sk,
    v.provider_key, v.datasource, v.source_provider_id, v.first_name, v.last_name, v.specialization,
    v.department_key, v.npi, n.credential AS npi_credential, n.taxonomy AS npi_taxonomy, n.status AS npi_status,
    CASE WHEN v.version = 1 THEN DATE '1900-01-01' ELSE CAST(v.effective_from AS DATE) END AS valid_from,
    coalesce(CAST(v.effective_to AS DATE), DATE '9999-12-31') AS valid_to,
    v.is_current
FROM v LEFT JOIN silver.npi_providers n ON n.npi = v.npi AND NOT n.is_quarantined
