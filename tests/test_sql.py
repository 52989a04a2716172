"""The SQL task (nbs/09b_sql, nbs/00b_benchmarks): sql-eval's comparison on hand-made result tables, loaders of
sql-eval's and defog-data's formats, read-only and time-limited engines (SQLite, and a real PostgreSQL server started
here on a unix socket), the gold self-check through `stablecode eval --tasks sql`, and generation through a real model."""
import json, os
from decimal import Decimal
import pytest
from stablecode.benchmarks import (BOOKSHOP_TABLES, SQL_CATEGORIES, bookshop_database, load_sql_database, load_sql_task,
                                   write_sql_offline)
from stablecode.eval import cli
from stablecode.generate import Backend, HFBackend
from stablecode.sql import (QueryError, ResultTable, SqlGoldBackend, evaluate_sql, extract_sql, gold_alternatives,
                            gold_results, local_postgres, open_engine, postgres_program, score_result, sql_prompt)

CI = os.environ.get('CI') == 'true'
T = lambda cols, *rows: ResultTable(cols.split(), list(rows))


@pytest.fixture(scope='module')
def pg_url():
    "A throwaway PostgreSQL server for this module; a missing PostgreSQL fails under CI=true and skips elsewhere."
    if not (postgres_program('initdb') and postgres_program('pg_ctl')):
        (pytest.fail if CI else pytest.skip)('PostgreSQL server programs (initdb, pg_ctl) not found; '
                                             'Debian: apt-get install postgresql (the Makefile installs it)')
    with local_postgres() as url: yield url


@pytest.fixture(params=['sqlite', 'postgres'])
def engine_url(request):
    return 'sqlite' if request.param == 'sqlite' else request.getfixturevalue('pg_url')


# --- sql-eval's comparison, on hand-made tables with the offline set's values

GOLD = T('name n_books', ('Ursula Le Guin', 3), ('Haruki Murakami', 3), ('Chinua Achebe', 2), ('Toni Morrison', 1))

@pytest.mark.parametrize('what, gen, ordered, want', [
    ('identical', GOLD, False, (True, True)),
    ('rows in another order', T('name n_books', ('Toni Morrison', 1), ('Chinua Achebe', 2), ('Ursula Le Guin', 3),
                                ('Haruki Murakami', 3)), False, (True, True)),
    ('columns swapped and renamed', T('n author', (3, 'Ursula Le Guin'), (3, 'Haruki Murakami'), (2, 'Chinua Achebe'),
                                      (1, 'Toni Morrison')), False, (False, True)),
    ('an extra column', T('author_id name n', (1, 'Ursula Le Guin', 3), (3, 'Haruki Murakami', 3), (2, 'Chinua Achebe', 2),
                          (4, 'Toni Morrison', 1)), False, (False, True)),
    ('a row missing', T('name n_books', ('Ursula Le Guin', 3), ('Haruki Murakami', 3), ('Chinua Achebe', 2)), False,
     (False, False)),
    ('a row too many', T('name n_books', *GOLD.rows, ('Italo Calvino', 2)), False, (False, False)),
    ('one count wrong', T('name n_books', ('Ursula Le Guin', 3), ('Haruki Murakami', 3), ('Chinua Achebe', 2),
                          ('Toni Morrison', 2)), False, (False, False)),
    ('only the counts', T('n_books', (3,), (3,), (2,), (1,)), False, (False, False)),
    ('rows reordered where order counts', T('name n_books', ('Haruki Murakami', 3), ('Ursula Le Guin', 3),
                                            ('Chinua Achebe', 2), ('Toni Morrison', 1)), True, (False, False)),
    ('same order, other names, order counts', T('a b', *GOLD.rows), True, (True, True)),
    ('extra column, order kept', T('id name n', *[(i,) + r for i, r in enumerate(GOLD.rows)]), True, (False, True)),
    ('duplicated rows', T('name n_books', *GOLD.rows, GOLD.rows[0], GOLD.rows[2]), False, (True, True)),
    ('duplicated rows, order counts', T('name n_books', GOLD.rows[0], *GOLD.rows), True, (True, True)),
    ('counts as floats and decimals', T('name n_books', ('Ursula Le Guin', 3.0), ('Haruki Murakami', Decimal('3')),
                                        ('Chinua Achebe', 2.0), ('Toni Morrison', Decimal('1.000'))), False, (True, True)),
])
def test_comparison_decisions(what, gen, ordered, want):
    assert score_result([GOLD], gen, ordered) == want, what


def test_comparison_values_and_alternatives():
    avg_pg = T('genre avg_price', ('Fantasy', Decimal('11.0300000000000000')), ('Literary', Decimal('9.4500000000000000')))
    avg_float = T('genre avg', ('Fantasy', 33.09 / 3), ('Literary', 66.15 / 7))          # 11.030000000000001, 9.450000000000001
    assert score_result([avg_pg], avg_float, False) == (True, True)
    assert score_result([avg_pg], T('genre avg', ('Fantasy', 11.03), ('Literary', 9.46)), False) == (False, False)
    nulls = T('name city', ('Hiro', None), ('Ada', 'Lagos'))
    assert score_result([nulls], T('z a', (None, 'Hiro'), ('Lagos', 'Ada')), False) == (False, True)   # names sort apart
    assert score_result([nulls], T('name city', ('Hiro', 'Lagos'), ('Ada', None)), False) == (False, False)
    assert score_result([T('x')], T('x'), False) == (True, True)              # both empty: exact, as in sql-eval
    assert score_result([T('x')], T('y', (1,)), False) == (False, False)      # an empty gold result is never a subset
    # gold alternatives: any one of them may match
    golds = [T('name', ('Ada',), ('Femi',)), T('customer_id', (1,), (6,))]
    assert score_result(golds, T('customer_id', (6,), (1,)), False) == (True, True)
    assert gold_alternatives('SELECT {c.name, c.id} FROM c GROUP BY {};SELECT 2') == [
        'SELECT c.name FROM c GROUP BY c.name', 'SELECT c.id FROM c GROUP BY c.id',
        'SELECT c.name, c.id FROM c GROUP BY c.name, c.id', 'SELECT 2']


def test_order_words_and_extraction():
    from stablecode.sql import keeps_order
    assert keeps_order('order_by', 'Which customer placed the most orders?')
    assert keeps_order('where', 'Sort the books by price.') and keeps_order('group_by', 'Arrange them by city')
    assert not keeps_order('where', 'How many orders were cancelled?') and not keeps_order('ratio', 'What is the border?')
    assert extract_sql("Sure.\n```sql\nSELECT a FROM t WHERE b = 'x;y';\nSELECT 2;\n```") == "SELECT a FROM t WHERE b = 'x;y'"
    assert extract_sql('SELECT 1;\n```') == 'SELECT 1' and extract_sql('') == ''


# --- loaders of sql-eval's and defog-data's formats

def test_loaders_read_the_real_formats(tmp_path):
    (tmp_path/'q.csv').write_text(
        'question,query,db_name,query_category,instructions\n'
        'How many authors are there?,"SELECT COUNT(*) FROM author;",academic,where,Count each author once.\n'
        'Which author has the highest aid?,"SELECT {author.name, author.aid} FROM author ORDER BY author.aid DESC LIMIT 1;",'
        'academic,order_by,\n')
    (tmp_path/'academic').mkdir()
    (tmp_path/'academic'/'academic.sql').write_text(     # defog-data's PostgreSQL forms: schema, ::casts, booleans
        "\nCREATE TABLE public.author (\n    aid bigint DEFAULT '0'::bigint NOT NULL,\n    name text DEFAULT ''::text,\n"
        "    active boolean,\n    since time without time zone\n);\n\n"
        "INSERT INTO public.author (aid, name, active, since) VALUES\n(1, 'Larry Summers', true, '09:00:00'),\n"
        "(5, 'Kempinski', false, NULL)\n;\n")
    qs, dbs = load_sql_task(tmp_path/'q.csv')
    assert [(q.task_id, q.category, q.instructions) for q in qs] == [('sql/0', 'where', 'Count each author once.'),
                                                                     ('sql/1', 'order_by', '')]
    assert [c['data_type'] for c in dbs['academic'].tables['author']] == ['bigint', 'text', 'boolean', 'time without time zone']
    assert 'Instructions: Count each author once.' in sql_prompt(qs[0], dbs['academic'])
    with open_engine('sqlite', dbs) as eng:
        assert eng.run('academic', 'SELECT aid, name, active FROM author ORDER BY aid').rows == [
            (1, 'Larry Summers', 1), (5, 'Kempinski', 0)]
        r = evaluate_sql(qs, dbs, SqlGoldBackend(qs, dbs), tmp_path/'out', progress=False)
    assert r.overall['correct'] == 1.0
    (tmp_path/'broker').mkdir()            # rows computed with PostgreSQL's date arithmetic, as defog-data's later scripts
    (tmp_path/'broker'/'broker.sql').write_text("CREATE TABLE public.t (\n    d date\n);\n\nINSERT INTO public.t (d) VALUES\n"
                                               "(CURRENT_DATE - INTERVAL '5 days')\n;\n")
    with pytest.raises(ValueError, match="SQLite cannot load its script .*broker_sqlite.sql is read when present"):
        open_engine('sqlite', {'broker': load_sql_database(tmp_path, 'broker')})
    (tmp_path/'broker'/'broker_sqlite.sql').write_text("CREATE TABLE t (d date);\nINSERT INTO t (d) VALUES (DATE('now', '-5 days'));\n")
    with open_engine('sqlite', {'broker': load_sql_database(tmp_path, 'broker')}) as eng:        # defog-data's translation
        assert len(eng.run('broker', "SELECT d FROM t WHERE d < DATE('now')").rows) == 1
    with pytest.raises(FileNotFoundError, match='yelp'): load_sql_database(tmp_path, 'yelp')
    with pytest.raises(ValueError, match="lacks field"):
        (tmp_path/'bad.csv').write_text('question,query\nWhat?,SELECT 1;\n'); load_sql_task(tmp_path/'bad.csv')


def test_offline_set_round_trips_and_covers_the_categories(tmp_path):
    for dialect in ('sqlite', 'postgres'):
        qs, dbs = load_sql_task(write_sql_offline(tmp_path/dialect, dialect))
        mem_qs, mem_dbs = load_sql_task(dialect=dialect)
        assert [(q.question, q.query, q.category) for q in qs] == [(q.question, q.query, q.category) for q in mem_qs]
        assert dbs == mem_dbs == {'bookshop': bookshop_database()}
    assert sorted({q.category for q in qs}) == sorted(SQL_CATEGORIES) and len(qs) == 30


def test_offline_questions_are_told_apart():
    "Another question's gold result answers a question in only two cases, both right under sql-eval's subset rule."
    qs, dbs = load_sql_task()
    with open_engine('sqlite', dbs) as eng:
        golds = [gold_results(eng, q)[0] for q in qs]
    from stablecode.sql import keeps_order
    hits = [(i, j) for i, q in enumerate(qs) for j in range(len(qs))
            if i != j and any(score_result(golds[i], g, keeps_order(q.category, q.question))[1] for g in golds[j])]
    # 0 <- 12: "orders in March 2024" is 3, and Ada, the customer with the most orders, has 3 (one number in a column);
    # 11 <- 5: books per author, grouped by name, lists the authors in alphabetical order with an extra column
    assert hits == [(0, 12), (11, 5)]


# --- engines: read-only, time-limited, throwaway

DESTRUCTIVE = ['DROP TABLE books', 'DELETE FROM orders', 'UPDATE books SET price = 0',
               "INSERT INTO authors VALUES (7, 'Someone', 'Nowhere')", 'ALTER TABLE books ADD COLUMN x int',
               'SELECT 1; DROP TABLE books', 'SELECT 1; DELETE FROM orders',
               'WITH d AS (DELETE FROM orders RETURNING *) SELECT COUNT(*) FROM d',
               'CREATE TABLE books2 AS SELECT * FROM books']

def _snapshot(eng) -> dict:
    return {t: sorted(map(repr, eng.run('bookshop', f'SELECT * FROM {t}').rows)) for t in BOOKSHOP_TABLES}

def test_destructive_queries_never_change_the_data(engine_url):
    _, dbs = load_sql_task(dialect='sqlite' if engine_url == 'sqlite' else 'postgres')
    with open_engine(engine_url, dbs, timeout=5) as eng:
        before = _snapshot(eng)
        assert [len(before[t]) for t in BOOKSHOP_TABLES] == [6, 12, 8, 14, 22]
        extra = ['DELETE FROM orders; COMMIT', 'COMMIT; DELETE FROM orders', "COPY (SELECT 1) TO PROGRAM 'true'",
                 'TRUNCATE order_items', 'SELECT * FROM orders FOR UPDATE'] if eng.dialect == 'postgres' else \
                ["ATTACH DATABASE ':memory:' AS x", 'PRAGMA query_only = OFF', 'VACUUM', 'REINDEX']
        for q in DESTRUCTIVE + extra:
            with pytest.raises(QueryError) as e: eng.run('bookshop', q)
            assert e.value.kind == 'error', q
        assert _snapshot(eng) == before


def test_a_destructive_answer_does_not_change_later_scores(engine_url, tmp_path):
    "Answers run in question order on the same copies: one that drops a table first leaves the rest scored as before."
    dialect = 'sqlite' if engine_url == 'sqlite' else 'postgres'
    qs, dbs = load_sql_task(dialect=dialect)
    gold = SqlGoldBackend(qs, dbs, dialect)
    class Vandal(Backend):
        name = 'vandal'
        def generate(self, prompts, stops, n=1, **kw):
            return [['```sql\nDROP TABLE orders;\n```']] + gold.generate(prompts[1:], stops[1:], n)
    r = evaluate_sql(qs, dbs, Vandal(), tmp_path, db=engine_url, gen_batch=100, progress=False)
    assert r.outcomes == {'error': 1, 'exact': 29}
    assert [p['correct'] for p in r.per_question] == [0.0] + [1.0] * 29


def test_a_long_query_is_stopped(engine_url):
    _, dbs = load_sql_task(dialect='sqlite' if engine_url == 'sqlite' else 'postgres')
    with open_engine(engine_url, dbs, timeout=1.0) as eng:
        endless = 'WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT COUNT(*) FROM r'
        with pytest.raises(QueryError) as e: eng.run('bookshop', endless)
        assert e.value.kind == 'timeout'
        if eng.dialect == 'postgres':       # a query that turns the server's time limit off is still stopped
            with pytest.raises(QueryError) as e:
                eng.run('bookshop', "SELECT set_config('statement_timeout', '0', true) AS t, pg_sleep(3600) AS s")
            assert e.value.kind == 'timeout'
        assert eng.run('bookshop', 'SELECT COUNT(*) AS n FROM books').rows == [(12,)]     # usable afterwards


def test_a_huge_result_is_refused():
    _, dbs = load_sql_task()
    with open_engine('sqlite', dbs, max_rows=1000) as eng:
        with pytest.raises(QueryError) as e: eng.run('bookshop', 'SELECT * FROM order_items a, order_items b, order_items c')
        assert e.value.kind == 'too_large'


def test_postgres_copies_are_dropped(pg_url):
    import psycopg
    _, dbs = load_sql_task(dialect='postgres')
    with open_engine(pg_url, dbs) as eng: names, role = list(eng.names.values()), eng.role
    with psycopg.connect(pg_url) as c:
        assert c.execute('SELECT datname FROM pg_database WHERE datname = ANY(%s)', (names,)).fetchall() == []
        assert c.execute('SELECT rolname FROM pg_roles WHERE rolname = %s', (role,)).fetchall() == []


# --- the self-check through the command line, on both engines

def test_cli_canonical_is_all_correct(engine_url, tmp_path, capsys):
    assert cli(['--tasks', 'sql', '--canonical', '--db', engine_url, '--out', str(tmp_path)]) == 0
    res = json.loads((tmp_path/'sql'/'sql_results.json').read_text())
    assert res['engine'] == ('sqlite' if engine_url == 'sqlite' else 'postgres') and res['questions'] == 30
    assert res['overall'] == {'correct': 1.0, 'exact': 1.0} and res['outcomes'] == {'exact': 30}
    assert all(c == {'questions': 5, 'correct': 1.0, 'exact': 1.0} for c in res['categories'].values())
    md = (tmp_path/'sql'/'sql_results.md').read_text()
    assert '| Stable Code Instruct (DPO) 3B (card) | 24.0 | 54.2 | 68.5 | 40.0 | 54.2 | 42.8 | – |' in md
    assert '| gold queries | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |' in capsys.readouterr().out
    recs = [json.loads(l) for l in (tmp_path/'sql'/'sql_samples.jsonl').read_text().splitlines()]
    with open_engine(engine_url, load_sql_task(dialect=res['engine'])[1]) as eng:     # every gold result has rows
        qs = load_sql_task(dialect=res['engine'])[0]
        assert all(max(len(t.rows) for t in gold_results(eng, q)[0]) > 0 for q in qs) and len(recs) == 30


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli(['--tasks', 'sql', '--canonical', '--db', 'mysql://x', '--out', str(tmp_path)]) == 2
    assert cli(['--tasks', 'sql', '--canonical', '--data', f'sql={tmp_path}/missing.csv', '--out', str(tmp_path)]) == 2
    assert cli(['--tasks', 'sql', '--canonical', '--db', 'postgresql://nobody@/x?host=/nonexistent', '--out',
                str(tmp_path)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.startswith('stablecode eval: ')]   # (and progress bars)
    assert len(err) == 3
    assert 'sqlite' in err[0] and 'missing.csv' in err[1] and 'cannot connect' in err[2]


def test_generation_through_a_real_model(tmp_path):
    "A random tiny model answers through HFBackend in ChatML: its noise is scored (an error or wrong), not a crash."
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, StableLmForCausalLM
    from stablecode.config import preset
    torch.manual_seed(0)
    t = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}, merges=[]))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False); t.decoder = decoders.ByteLevel()
    t.add_special_tokens(['<|endoftext|>'])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token='<|endoftext|>')
    model = StableLmForCausalLM(preset('tiny', vocab_size=len(tok), bos_token_id=len(tok) - 1, eos_token_id=len(tok) - 1,
                                       num_hidden_layers=2).to_hf())
    qs, dbs = load_sql_task(limit=3)
    r = evaluate_sql(qs, dbs, HFBackend(model, tok, batch_size=3), tmp_path, max_new_tokens=8, progress=False)
    recs = [json.loads(l) for l in (tmp_path/'sql_samples.jsonl').read_text().splitlines()]
    assert len(recs) == 3 and all(r_['status'] in ('error', 'wrong') for r_ in recs)
    assert r.overall['correct'] == 0.0 and r.model.startswith('StableLmForCausalLM:')
