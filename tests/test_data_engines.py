"Data on real engines: resume after an interruption, Ray on a local cluster, starcoderdata repositories in order."
import dataclasses, gzip, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

from stablecode.data import Decontaminate, SourceReader, build_corpus, iter_documents, mixture_preset, MixtureConfig
from stablecode.packing import PackConfig, Loader, pack_corpus
from stablecode.tokenizer import train_tokenizer


def _tiny(**executor):
    d = mixture_preset('tiny', max_files=30, math_count=40).to_dict()
    d['executor'] = dict(d['executor'], tasks=2, **executor)
    return MixtureConfig.from_dict(d, 'test')


def _shards(out: Path) -> dict[str, bytes]:
    "Every corpus shard, decompressed (gzip headers carry a time stamp)."
    return {f.name: gzip.decompress(f.read_bytes()) for f in sorted((out / 'corpus').glob('*.jsonl.gz'))}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "An uninterrupted local build of the small tiny mixture with two tasks."
    out = tmp_path_factory.mktemp('ref')
    return out, build_corpus(_tiny(), out)


# ---------------------------------------------------------------- resume

def test_interrupted_build_resumes_to_the_same_corpus(reference, tmp_path, monkeypatch):
    ref, ref_man = reference
    out = tmp_path / 'out'
    real_run = Decontaminate.run
    def failing(self, data, rank=0, world_size=1):
        if rank == 1: raise RuntimeError('simulated crash of final task 1')
        yield from real_run(self, data, rank, world_size)
    monkeypatch.setattr(Decontaminate, 'run', failing)
    with pytest.raises(RuntimeError, match='simulated crash'):
        build_corpus(_tiny(), out)
    assert not (out / 'corpus' / 'manifest.json').exists()
    assert (out / 'work' / 'logs' / 'final' / 'completions' / '00000').exists()
    assert not (out / 'work' / 'logs' / 'final' / 'completions' / '00001').exists()
    monkeypatch.setattr(Decontaminate, 'run', real_run)
    reads = []
    real_read = SourceReader.run
    def counting(self, data=None, rank=0, world_size=1):
        reads.append(rank); yield from real_read(self, data, rank, world_size)
    monkeypatch.setattr(SourceReader, 'run', counting)
    man = build_corpus(_tiny(), out)
    assert reads == []                                    # the finished stages were not run again
    assert {'read_filter', 'final'} <= set(man['timings'])    # times of the first run's stages are kept
    assert _shards(out) == _shards(ref) and len(_shards(ref)) == 2
    assert man['content_sha256'] == ref_man['content_sha256'] and man['totals'] == ref_man['totals']
    # a changed mixture starts clean: everything is read again
    changed = _tiny(); changed.sources[2].count = 20
    man2 = build_corpus(changed, out)
    assert sorted(reads) == [0, 0, 0, 1, 1, 1] and man2['sources']['math']['docs_in'] == 20


# ---------------------------------------------------------------- starcoderdata

STARCODER_ROWS = {
    'python': [('acme/web', 'app/views.py'), ('zed/cli', 'main.py'), ('acme/web', 'app/models.py'),
               ('bolt/ml', 'train.py'), ('zed/cli', 'cli/args.py'), ('acme/web', 'README_test.py'),
               ('bolt/ml', 'data/load.py'), ('kite/db', 'db.py')],
    'go': [('gopher/srv', 'server.go'), ('gopher/srv', 'cmd/main.go'), ('tiny/go', 'x.go')],
}


def _starcoder_dir(root: Path) -> Path:
    "A local copy of bigcode/starcoderdata's layout and schema: one data_dir per language, parquet files."
    import pyarrow as pa, pyarrow.parquet as pq
    for lang, rows in STARCODER_ROWS.items():
        (root / lang).mkdir(parents=True)
        body = (lambda r, p, i: f"def f_{i}():\n    # {r} {p}\n    return {i} * {i + 7} - {len(p)}\n") if lang == 'python' \
            else (lambda r, p, i: f"package main\n\n// {r} {p}\nfunc F{i}() int {{ return {i} * {i + 3} }}\n")
        pq.write_table(pa.table({
            'max_stars_repo_path': [p for _, p in rows], 'max_stars_repo_name': [r for r, _ in rows],
            'max_stars_count': [i * 3 for i in range(len(rows))], 'id': [f"{lang}-{i}" for i in range(len(rows))],
            'content': [body(r, p, i) for i, (r, p) in enumerate(rows)]}), root / lang / 'train-00000-of-00001.parquet')
    return root


def test_starcoderdata_repositories_come_out_together_in_path_order(tmp_path):
    src = dataclasses.asdict(mixture_preset('stable-code-3b').sources[0])
    assert src['columns'] == {'repository': 'max_stars_repo_name', 'path': 'max_stars_repo_path'}
    assert src['group_by'] == 'repository'
    src.update(dataset=str(_starcoder_dir(tmp_path / 'starcoderdata')), subsets=['python', 'go'], streaming=True)
    mix = MixtureConfig.from_dict(dict(name='sc', sources=[src], executor=dict(tasks=3),
                                       dedup=dict(near=False), decontamination=dict(enabled=False)), 'test')
    man = build_corpus(mix, tmp_path / 'out')
    assert man['sources']['starcoderdata']['docs_kept'] == 11
    seen_repos = {}
    for f in sorted((tmp_path / 'out' / 'corpus').glob('*.jsonl.gz')):
        keys = [(d['metadata']['repository'], d['metadata']['path']) for d in
                map(json.loads, gzip.decompress(f.read_bytes()).decode().splitlines())]
        assert keys == sorted(keys), f.name                       # consecutive per repository, in path order
        for r, _ in keys: assert seen_repos.setdefault(r, f.name) == f.name   # a repository is in one shard
    assert len(seen_repos) == 6
    # packing joins the files of one repository, and only those
    docs = list(iter_documents(tmp_path / 'out' / 'corpus'))
    tok = train_tokenizer((d['text'] for d in docs * 10), vocab_size=320)
    cfg = PackConfig(seq_len=64, group_by='repository', fim_scope='file', fim_rate=1.0, group_chars=100_000)
    pm = pack_corpus(tmp_path / 'out' / 'corpus', tok, cfg, tmp_path / 'packed', tasks=2)
    assert pm['sources']['starcoderdata']['docs'] == 6 and pm['sources']['starcoderdata']['fim_docs'] == 6


# ---------------------------------------------------------------- Ray

def _ray():
    if os.environ.get('CI') == 'true': import ray; return ray   # in the lock: never skipped on CI
    return pytest.importorskip('ray')


def test_ray_build_is_byte_identical_to_local(reference, tmp_path, monkeypatch):
    ray = _ray()
    ref, ref_man = reference
    tmp = Path(tempfile.mkdtemp(prefix='ray', dir='/tmp'))   # short: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv('TMPDIR', str(tmp))                    # datatrove's Ray workers log under tempfile.gettempdir()
    monkeypatch.setenv('RAY_USAGE_STATS_ENABLED', '0')
    t0 = time.time()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / 'r'), log_to_driver=False,
             runtime_env={'env_vars': {'TMPDIR': str(tmp)}})
    try:
        man = build_corpus(_tiny(kind='ray', workers=2), tmp_path / 'out')
    finally:
        ray.shutdown()
        print(f"ray build + start/stop: {time.time() - t0:.1f}s")
    try:
        assert _shards(tmp_path / 'out') == _shards(ref)
        assert man['content_sha256'] == ref_man['content_sha256'] and man['totals'] == ref_man['totals']
        assert man['config']['executor']['kind'] == 'ray'
    finally:
        left = subprocess.run(['pgrep', '-f', str(tmp)], capture_output=True, text=True).stdout.split()
        for _ in range(20):
            if not left: break
            time.sleep(0.5)
            left = subprocess.run(['pgrep', '-f', str(tmp)], capture_output=True, text=True).stdout.split()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"Ray left processes behind: {left}"
