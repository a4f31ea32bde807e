SELECT -1 AS department_sk, 'unknown' AS department_key, 'unknown' AS datasource, 'unknown' AS source_department_id,
       'Unknown' AS name
UNION ALL
SELECT surrogate_key(department_key), department_key, datasource,
       source_department_id, name
FROM silver.departments WHERE NOT is_quarantined
