-- Patients; the literal string 'NULL' some EMRs write into name columns means missing.
-- US address tail: `…, city, ST 12345[-6789]`, also `city ST`, no ZIP, and military
-- `…, APO|FPO|DPO AA|AE|AP 12345` (city APO, state AE). Anything else leaves them NULL.
WITH spaced AS (
    SELECT *, upper(trim(regexp_replace(address, '\s+', ' ', 'g'))) AS _u FROM stage
), a AS (
    SELECT *,
        nullif(regexp_extract(_u, '[ ,]([0-9]{5})(-?[0-9]{4})?$', 1), '') AS address_zip,
        nullif(regexp_extract(_u, '(^|[ ,])([A-Z]{2})\.?( ?,? ?[0-9]{5}(-?[0-9]{4})?)?$', 2), '') AS address_state,
        nullif(trim(regexp_extract(_u, ',([^,]+?)[ ,]+[A-Z]{2}\.?( ?,? ?[0-9]{5}(-?[0-9]{4})?)?$', 1)), '')
            AS address_city
    FROM spaced
)
SELECT
    datasource,
    trim(source_patient_id) AS source_patient_id,
    coalesce(trim(source_patient_id), 'unkeyed:' || _row_hash) || '-' || datasource AS patient_key,
    nullif(trim(first_name), 'NULL') AS first_name,
    nullif(trim(middle_name), 'NULL') AS middle_name,
    nullif(trim(last_name), 'NULL') AS last_name,
    nullif(trim(ssn), '') AS ssn,
    nullif(trim(phone), '') AS phone,
    CASE lower(trim(gender))
        WHEN 'male' THEN 'male' WHEN 'm' THEN 'male'
        WHEN 'female' THEN 'female' WHEN 'f' THEN 'female'
        ELSE 'unknown'
    END AS gender,
    CAST(date_of_birth AS DATE) AS date_of_birth,
    nullif(trim(address), '') AS address,
    a.address_city AS city,
    CASE WHEN a.address_state IN (
        'AL', 'AK', 'AZ', 'AR', 'CA', 'CO', 'CT', 'DE', 'DC', 'FL', 'GA', 'HI', 'ID', 'IL', 'IN', 'IA', 'KS',
        'KY', 'LA', 'ME', 'MD', 'MA', 'MI', 'MN', 'MS', 'MO', 'MT', 'NE', 'NV', 'NH', 'NJ', 'NM', 'NY', 'NC',
        'ND', 'OH', 'OK', 'OR', 'PA', 'RI', 'SC', 'SD', 'TN', 'TX', 'UT', 'VT', 'VA', 'WA', 'WV', 'WI', 'WY',
        'PR', 'VI', 'GU', 'AS', 'MP', 'AA', 'AE', 'AP'
    ) THEN a.address_state END AS state,
    a.address_zip AS zip_code,
    CAST(source_modified_at AS TIMESTAMP) AS source_modified_at,
    cast_errors,
    _batch_id,
    _row_hash
FROM a
