"""Static checks of the model SQL that no engine's result would show, only its speed."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from rcmlake.transforms import models


def _membership_lists(sql: str) -> list[exp.Select]:
    """The subqueries of ``x IN (SELECT …)`` and ``x NOT IN (SELECT …)`` in ``sql``."""
    found = []
    for node in sqlglot.parse_one(sql, read="duckdb").find_all(exp.In):
        query = node.args.get("query")
        select = query.this if isinstance(query, exp.Subquery) else query
        if isinstance(select, exp.Select):
            found.append(select)
    return found


def _distinct(select: exp.Select) -> bool:
    """Whether ``select`` returns each value once: DISTINCT itself, or reading only a CTE
    of the same statement that is DISTINCT."""
    if select.args.get("distinct"):
        return True
    source = select.args.get("from") or select.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or select.args.get("joins"):
        return False
    root = select.root()
    ctes = {c.alias: c.this for c in root.find_all(exp.CTE)}
    cte = ctes.get(table.name)
    return isinstance(cte, exp.Select) and bool(cte.args.get("distinct"))


def test_a_membership_list_of_datasources_is_distinct() -> None:
    """``datasource IN (SELECT datasource FROM a_fact)`` must read ``SELECT DISTINCT``.

    The two engines agree on the result either way; Sail (DataFusion) does not on the cost.
    It plans the membership as a hash semi or anti join built on the subquery's rows, and a
    key with one value per hospital puts every row in one of two hash chains that each
    probe walks: at 100k transactions, `mart_revenue_monthly` took 19.3 s on Sail and
    `mart_kpi_monthly` 47.5 s, and with DISTINCT 0.05 s and 0.33 s (DuckDB: unchanged)."""
    offending = []
    for layer in ("silver", "gold"):
        for m in models(layer):
            for select in _membership_lists(m.sql):
                names = {c.alias_or_name for c in select.expressions}
                if "datasource" in names and not _distinct(select):
                    offending.append(f"{layer}.{m.name}: {select.sql()}")
    assert offending == []


def test_the_check_finds_a_membership_list_that_is_not_distinct() -> None:
    sql = "SELECT * FROM a WHERE datasource NOT IN (SELECT datasource FROM b)"
    assert [s.sql() for s in _membership_lists(sql)] == ["SELECT datasource FROM b"]
    assert not _distinct(_membership_lists(sql)[0])
    assert _distinct(
        _membership_lists(sql.replace("(SELECT datasource", "(SELECT DISTINCT datasource"))[0]
    )
    via_cte = "WITH r AS (SELECT DISTINCT datasource FROM b) " + sql.replace("FROM b", "FROM r")
    assert _distinct(_membership_lists(via_cte)[0])


def test_a_key_is_found_without_the_row_hash_only_where_that_leaves_it_as_it_is() -> None:
    """``_key_shape``: a key that uses ``_row_hash`` only where every other value is missing
    (the last argument of a COALESCE, under operators that keep NULL) can be computed with
    the hash as NULL; any other use, or a model that joins, cannot."""
    from rcmlake.layers.silver import _key_shape
    from rcmlake.transforms import model

    t = "CAST(m AS TIMESTAMP) AS source_modified_at"
    shape = {
        "SELECT trim(id) || '-' || datasource AS k": "plain",
        "SELECT coalesce(trim(id), 'unkeyed:' || _row_hash) || '-' || datasource AS k": "fallback",
        "SELECT coalesce(trim(id), trim(alt), lower(_row_hash)) AS k": "fallback",
        # the hash first: with it NULL the key would be ``id``, with it the hash
        "SELECT coalesce(_row_hash, id) AS k": None,
        # concat() reads NULL as '': the key would be 'x' for every row without the hash
        "SELECT concat('x', _row_hash) AS k": None,
        "SELECT CASE WHEN _row_hash IS NULL THEN id END AS k": None,
    }
    for select, want in shape.items():
        assert _key_shape(f"{select}, {t} FROM stage", "k") == want, select
    assert _key_shape(f"SELECT s.id AS k, {t} FROM stage s JOIN x ON x.id = s.id", "k") is None
    assert _key_shape("SELECT id AS k, _row_hash AS source_modified_at FROM stage", "k") is None
    assert _key_shape("SELECT id AS k FROM stage", "k") is None  # no source time to order by
    # the shipped models: claims and transactions fall back to the hash, adjustments do not
    assert _key_shape(model("silver", "claims").sql, "claim_key") == "fallback"
    assert _key_shape(model("silver", "transactions").sql, "transaction_key") == "fallback"
    assert _key_shape(model("silver", "claim_adjustments").sql, "adjustment_key") == "plain"
    assert _key_shape(model("silver", "remittance_claims").sql, "remittance_claim_key") is None


def test_a_key_lookup_is_a_membership_in_the_keys_of_one_silver_entity_and_nothing_else() -> None:
    """Silver skips re-checking a rule after writes that kept every key only when the rule
    reads nothing of the entity but its keys: any filter, other column, join, union,
    negation or second lookup makes it an ordinary rule."""
    from rcmlake.transforms import key_lookup

    looks_up = {
        "transaction_key IN (SELECT transaction_key FROM silver.transactions)": "transactions",
        "procedure_code IN (SELECT cpt_code FROM silver.cpt_codes)": "cpt_codes",
        "x IN (SELECT t.transaction_key FROM silver.transactions t)": "transactions",
        "x IN (SELECT DISTINCT patient_key FROM silver.patients)": "patients",
    }
    ordinary = [
        "x IN (SELECT transaction_key FROM silver.transactions WHERE NOT is_quarantined)",
        "x IN (SELECT amount FROM silver.transactions)",
        "x IN (SELECT transaction_key FROM silver.transactions) OR y > 0",
        "x NOT IN (SELECT transaction_key FROM silver.transactions)",
        "x IN (SELECT transaction_key FROM silver.transactions UNION SELECT 'k')",
        "x IN (SELECT u.transaction_key FROM silver.transactions t)",
        "x IN (SELECT transaction_key FROM silver.transactions, silver.claims)",
        "x IN (SELECT transaction_key FROM other.transactions)",
        "x IN (SELECT claim_key FROM silver.no_such_entity)",
        "(SELECT max(transaction_key) FROM silver.transactions) IN (SELECT claim_key FROM silver.claims)",
        "amount >= 0",
        "x IN (SELECT",
    ]
    assert {p: key_lookup(p) for p in looks_up} == looks_up
    assert [p for p in ordinary if key_lookup(p) is not None] == []
