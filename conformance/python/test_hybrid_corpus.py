"""Hybrid plans over DuckDB SQL beyond TPC-H: every query reads a local table and a remote one
(an OpenDuck attachment) and must give the answer DuckDB gives with both tables local. Runs on
DuckDB 1.5.5 and 2.0.0. A randomized differential test generates more queries; its seed is
printed on failure (OPENDUCK_HYBRID_SEED replays it)."""

import decimal
import os
import random

import pytest

from conftest import attach_sql

LOCAL_ITEMS = """
CREATE TABLE items AS
SELECT i AS id,
       ['tools', 'Toys', 'food', NULL][1 + i % 4] AS cat,
       (i * 1.25)::DECIMAL(10, 2) AS price,
       CASE WHEN i % 7 = 0 THEN NULL ELSE i % 13 END AS grp,
       [i % 3, i % 5] AS tags,
       {'a': i % 4, 'b': 'x' || i} AS info,
       DATE '2024-01-01' + INTERVAL (i % 40) DAY AS added
FROM range(200) t(i)
"""

REMOTE_SALES = """
CREATE TABLE {name} AS
SELECT CASE WHEN i % 17 = 0 THEN NULL ELSE i % 230 END AS item_id,
       (i % 9) - 2 AS qty,
       ((i * 7) % 101) / 4.0 AS amount,
       DATE '2024-01-01' + INTERVAL (i % 90) DAY AS day,
       ['north', 'South', 'east', 'WEST', NULL][1 + i % 5] AS region,
       i AS seq
FROM range(5000) t(i)
"""

CORPUS = [
    # joins and NULL semantics
    "SELECT i.cat, sum(s.amount), count(*) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY i.cat",
    "SELECT i.id, s.seq FROM items i JOIN sales s ON i.id = s.item_id WHERE s.qty > 5 AND i.price < 20",
    "SELECT i.id, s.seq FROM items i LEFT JOIN sales s ON i.id = s.item_id AND s.region = 'north'",
    "SELECT s.seq, i.cat FROM sales s LEFT JOIN items i ON i.id = s.item_id WHERE s.seq < 300",
    "SELECT count(*) FROM items i FULL OUTER JOIN sales s ON i.id = s.item_id",
    "SELECT i.id FROM items i WHERE i.id IN (SELECT item_id FROM sales WHERE qty = 6)",
    "SELECT i.id FROM items i WHERE i.id NOT IN (SELECT item_id FROM sales WHERE item_id IS NOT NULL)",
    "SELECT i.id FROM items i WHERE EXISTS (SELECT 1 FROM sales s WHERE s.item_id = i.id AND s.qty > 5)",
    "SELECT i.id FROM items i WHERE NOT EXISTS (SELECT 1 FROM sales s WHERE s.item_id = i.id)",
    "SELECT i.id FROM items i SEMI JOIN sales s ON i.id = s.item_id",
    "SELECT i.id FROM items i ANTI JOIN sales s ON i.id = s.item_id",
    "SELECT i.grp, count(s.seq) FROM items i JOIN sales s ON i.grp = s.qty GROUP BY i.grp",
    "SELECT i.id, s.seq FROM items i, sales s WHERE i.id = s.item_id AND (s.qty = 1 OR i.cat = 'food')",
    # aggregates: partial on the server and not
    "SELECT i.cat, min(s.amount), max(s.day), count(s.region) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY ALL",
    "SELECT i.cat, avg(s.amount), count(DISTINCT s.region) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY i.cat",
    "SELECT count(*), sum(s.qty) FROM items i JOIN sales s ON i.id = s.item_id WHERE i.id > 1000",
    "SELECT i.cat, sum(s.qty * i.price) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY i.cat",
    "SELECT s.region, sum(s.amount) FILTER (WHERE i.price > 10) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY s.region",
    "SELECT i.cat, string_agg(s.region, ',' ORDER BY s.seq) FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq < 400 GROUP BY i.cat",
    "SELECT i.cat, s.region, sum(s.amount) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY i.cat, s.region HAVING sum(s.amount) > 100",
    "SELECT id, count(*), sum(s.amount) FROM items i JOIN (SELECT item_id AS id, amount FROM sales) s USING (id) GROUP BY id",
    "SELECT count(*), sum(amount) FROM items NATURAL JOIN (SELECT item_id AS id, amount FROM sales WHERE qty > 1)",
    "SELECT * FROM (SELECT i.id, s.seq FROM items i JOIN sales s ON i.id = s.item_id) t WHERE t.seq % 97 = 1",
    # aggregates over a LEFT JOIN: partial on the server, unmatched rows counting 0
    "SELECT i.id, count(s.seq), sum(s.amount), max(s.day) FROM items i LEFT JOIN sales s ON i.id = s.item_id AND s.qty > 2 GROUP BY i.id",
    "SELECT n, count(*) FROM (SELECT i.id, count(s.region) AS n FROM items i LEFT JOIN sales s ON i.id = s.item_id AND s.region ILIKE '%th' GROUP BY i.id) GROUP BY n",
    "SELECT i.cat, count(*), count(s.seq) FROM items i LEFT JOIN sales s ON i.id = s.item_id AND i.price > s.amount GROUP BY i.cat",
    # windows, QUALIFY, ordering and limits
    "SELECT i.id, s.seq, row_number() OVER (PARTITION BY i.cat ORDER BY s.seq) FROM items i JOIN sales s ON i.id = s.item_id",
    "SELECT i.id, s.amount FROM items i JOIN sales s ON i.id = s.item_id QUALIFY rank() OVER (PARTITION BY i.id ORDER BY s.amount DESC, s.seq) = 1",
    "SELECT i.id, s.seq FROM items i JOIN sales s ON i.id = s.item_id ORDER BY s.seq LIMIT 10",
    "SELECT i.id, s.seq FROM items i JOIN sales s ON i.id = s.item_id ORDER BY s.amount DESC NULLS FIRST, s.seq LIMIT 7 OFFSET 3",
    "SELECT count(*) FROM (SELECT i.id FROM items i JOIN sales s ON i.id = s.item_id LIMIT 25)",
    # DuckDB syntax and functions
    "SELECT * EXCLUDE (tags, info) FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq < 50",
    "SELECT i.info.a, i.tags[1], list_sum(i.tags), s.seq FROM items i JOIN sales s ON i.id = s.item_id WHERE s.qty = 3",
    "SELECT i.id, s.region FROM items i JOIN sales s ON i.id = s.item_id WHERE s.region ILIKE 's%' AND i.cat ILIKE '%o%'",
    "SELECT i.id, s.day - i.added, s.day + INTERVAL 3 DAY, date_trunc('month', s.day) FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq < 100",
    "SELECT i.id, s.qty / 2, s.qty // 2, s.qty % 3, i.id / 3 FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq < 100",
    "SELECT i.cat, s.region FROM items i JOIN sales s ON i.id = s.item_id WHERE s.region COLLATE NOCASE = 'south' AND s.seq < 400",
    "SELECT strftime(s.day, '%Y/%m'), count(*) FROM items i JOIN sales s ON i.id = s.item_id GROUP BY 1",
    "SELECT i.id, coalesce(s.region, 'none'), CASE WHEN s.qty < 0 THEN 'neg' ELSE 'pos' END FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq < 200",
    "SELECT i.id, s.amount::INTEGER, CAST(s.qty AS VARCHAR) || '!' FROM items i JOIN sales s ON i.id = s.item_id WHERE s.seq BETWEEN 10 AND 60",
    # set operations, CTEs, derived tables
    "SELECT id FROM items UNION SELECT item_id FROM sales",
    "SELECT id FROM items UNION ALL SELECT item_id FROM sales WHERE seq < 100",
    "SELECT id FROM items EXCEPT SELECT item_id FROM sales",
    "SELECT id FROM items INTERSECT SELECT item_id FROM sales",
    "WITH big AS (SELECT item_id, sum(amount) AS total FROM sales GROUP BY item_id) SELECT i.cat, max(b.total) FROM items i JOIN big b ON i.id = b.item_id GROUP BY i.cat",
    "SELECT i.cat, t.n FROM items i JOIN (SELECT item_id, count(*) AS n FROM sales WHERE qty > 0 GROUP BY item_id) t ON t.item_id = i.id",
    "SELECT i.id, (SELECT max(seq) FROM sales) AS last FROM items i WHERE i.id < 5",
    "SELECT i.id, (SELECT count(*) FROM sales s WHERE s.item_id = i.id) FROM items i WHERE i.id < 20",
    # volatile and session-bound functions stay local
    "SELECT count(*) FROM items i JOIN sales s ON i.id = s.item_id WHERE s.day < current_date",
    "SELECT count(*) > 0 FROM items i JOIN sales s ON i.id = s.item_id WHERE random() < 2",
]


def normalized(rows):
    def value(v):
        if isinstance(v, (float, decimal.Decimal)):
            return round(float(v), 6)
        if isinstance(v, list):
            return tuple(value(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, value(x)) for k, x in v.items()))
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


@pytest.fixture(scope="module")
def shop(server, request):
    import duckdb

    from conftest import extension_path

    con = duckdb.connect(config={"allow_unsigned_extensions": True})
    con.execute(f"LOAD '{extension_path()}'")
    con.execute(attach_sql(server))
    # Each DuckDB version under test gets its own remote table (the suite shares one server).
    remote = "corpus_sales_" + duckdb.__version__.replace(".", "_")
    con.execute(f"DROP TABLE IF EXISTS cloud.main.{remote}")
    con.execute(REMOTE_SALES.format(name=f"cloud.main.{remote}"))
    con.execute(LOCAL_ITEMS)
    con.execute("CREATE SCHEMA memory.loc")
    con.execute(f"CREATE TABLE memory.loc.sales AS SELECT * FROM cloud.main.{remote}")
    yield con, remote
    con.execute("SET search_path = ''")
    con.execute(f"DROP TABLE IF EXISTS cloud.main.{remote}")
    con.close()


def both(con, remote, sql):
    """(hybrid answer, all-local answer, whether it ran split)."""
    remote_sql = sql.replace("sales", f"cloud.main.{remote}")
    con.execute("SET search_path = ''")
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + remote_sql).fetchall())
    got = normalized(con.execute(remote_sql).fetchall())
    expected = normalized(con.execute(sql.replace("sales", "memory.loc.sales")).fetchall())
    return got, expected, "REMOTE→LOCAL" in plan


def test_corpus_answers_equal_all_local(shop):
    con, remote = shop
    wrong, split = [], 0
    for sql in CORPUS:
        got, expected, was_split = both(con, remote, sql)
        if got != expected:
            wrong.append(sql)
        split += was_split
    assert wrong == [], "\n".join(wrong)
    assert split >= len(CORPUS) // 2, f"only {split} of {len(CORPUS)} queries ran split"


def test_corpus_through_the_relational_api(shop):
    """DuckDB's relational API (`con.sql`) hands the extension its own rendering of a query
    (`count_star()`, doubled parentheses): the same answers either way."""
    con, remote = shop
    con.execute("SET search_path = ''")
    wrong = []
    for sql in CORPUS:
        got = normalized(con.sql(sql.replace("sales", f"cloud.main.{remote}")).fetchall())
        if got != normalized(con.sql(sql.replace("sales", "memory.loc.sales")).fetchall()):
            wrong.append(sql)
    assert wrong == [], "\n".join(wrong)


def random_query(rng: random.Random) -> str:
    """A query over items (local) and sales (remote) from a small grammar."""
    filters_s = ["s.qty > {n}", "s.amount < {f}", "s.region = 'north'", "s.region IS NULL", "s.day >= DATE '2024-02-01'", "s.qty IN (1, 2, 3)"]
    filters_i = ["i.price > {n}", "i.cat = 'food'", "i.grp IS NOT NULL", "i.id % 3 = 0"]
    where = [f.format(n=rng.randint(-2, 8), f=rng.randint(1, 25)) for f in rng.sample(filters_s, rng.randint(0, 2))]
    where += [f.format(n=rng.randint(1, 200), f=0) for f in rng.sample(filters_i, rng.randint(0, 2))]
    join = rng.choice(["JOIN", "LEFT JOIN", "JOIN"])
    cond = rng.choice(["i.id = s.item_id", "i.grp = s.qty", "i.id = s.item_id AND i.grp = s.qty"])
    shape = rng.choice(["agg_local", "agg_remote", "agg_both", "rows"])
    if shape == "agg_local":
        select, tail = "i.cat, sum(s.amount), count(*), min(s.qty)", "GROUP BY i.cat"
    elif shape == "agg_remote":
        select, tail = "s.region, count(i.id), max(i.price)", "GROUP BY s.region"
    elif shape == "agg_both":
        select, tail = "i.cat, s.region, sum(s.qty), count(s.seq)", "GROUP BY ALL"
    else:
        select, tail = "i.id, s.seq, s.amount", ""
    sql = f"SELECT {select} FROM items i {join} sales s ON {cond}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + (" " + tail if tail else "")


def test_random_queries_equal_all_local(shop):
    con, remote = shop
    seed = int(os.environ.get("OPENDUCK_HYBRID_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for _ in range(40):
        sql = random_query(rng)
        got, expected, _ = both(con, remote, sql)
        assert got == expected, f"seed {seed} (OPENDUCK_HYBRID_SEED={seed} replays it): {sql}"


def test_session_settings_that_change_meaning_are_respected(shop):
    """Settings that change what SQL means in the client (order defaults, integer division,
    collation) give the client's answer, in the client's order."""
    con, remote = shop
    con.execute("SET search_path = ''")
    # Each setting changes this query's answer: the order, the division, which regions the
    # (remote-side) filters keep and the text of the timestamps they compare.
    sql = (
        "SELECT i.grp, s.qty / 2 AS half, s.seq FROM items i JOIN sales s ON i.id = s.item_id "
        "WHERE s.seq < 300 AND s.region <> 'south' AND s.day::TIMESTAMPTZ::VARCHAR LIKE '%00:00:00+00' ORDER BY i.grp, s.seq"
    )
    remote_sql = sql.replace("sales", f"cloud.main.{remote}")
    assert "REMOTE→LOCAL" in "".join(r[1] for r in con.execute("EXPLAIN " + remote_sql).fetchall()), "splits by default"
    for setting, value in (
        ("default_null_order", "'nulls_first'"),
        ("default_order", "'desc'"),
        ("integer_division", "true"),
        ("default_collation", "'nocase'"),
        ("TimeZone", "'America/New_York'"),
    ):
        con.execute(f"SET {setting} = {value}")
        try:
            got = con.execute(remote_sql).fetchall()
            expected = con.execute(sql.replace("sales", "memory.loc.sales")).fetchall()
            assert got == expected, setting
        finally:
            con.execute(f"RESET {setting}")
