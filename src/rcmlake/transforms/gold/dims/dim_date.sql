-- Every day from a year before the first service date to a year after the as-of date.
WITH bounds AS (
    SELECT
        CAST(date_trunc('year', min(service_date)) - INTERVAL 1 YEAR AS DATE) AS first_day,
        CAST(date_trunc('year', max(p.as_of_date)) + INTERVAL 2 YEAR - INTERVAL 1 DAY AS DATE) AS last_day
    FROM silver.transactions, params p
), days AS (
    SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL 1 DAY)) AS DATE) AS date FROM bounds
)
SELECT
    CAST(strftime(date, '%Y%m%d') AS INTEGER) AS date_key,
    date,
    year(date) AS year,
    quarter(date) AS quarter,
    month(date) AS month,
    monthname(date) AS month_name,
    CAST(date_trunc('month', date) AS DATE) AS month_start,
    day(date) AS day,
    isodow(date) AS day_of_week,
    isodow(date) >= 6 AS is_weekend,
    date = last_day(date) AS is_month_end,
    year(date) + CASE WHEN p.fiscal_year_start_month > 1 AND month(date) >= p.fiscal_year_start_month THEN 1 ELSE 0 END
        AS fiscal_year,
    ((month(date) - p.fiscal_year_start_month + 12) % 12) // 3 + 1 AS fiscal_quarter
FROM days, params p
