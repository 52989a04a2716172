"Tokenizer, packing and the training loader: document index, resume in a fresh process, ranks, proportions, CLI."
import json, os, subprocess, sys, sysconfig, textwrap
from collections import Counter
from pathlib import Path
import numpy as np
import pytest

from stablecode.fim import fim_inverse
from stablecode.tokenizer import train_tokenizer, save_tokenizer, SPECIAL_TOKENS
from stablecode.packing import PackConfig, pack_documents, PackedDataset, Loader, cli

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = dict(code=0.7, text=0.2, math=0.1)

def _docs():
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))[:120]
    docs = [dict(text=f.read_text(encoding='utf-8', errors='replace'), id=f'code/{f.name}',
                 metadata=dict(source='code', language='Python')) for f in files]
    import pydoc_data.topics as t
    docs += [dict(text=v, id=f'text/{k}', metadata=dict(source='text', language='en'))
             for k, v in sorted(t.topics.items())[:60]]
    docs += [dict(text=f"Problem {i}: What is {i} * {i + 3}?\nAnswer: {i} * {i + 3} = {i * (i + 3)}. ∎\n", id=f'math/{i}',
                  metadata=dict(source='math', language='en')) for i in range(400)]
    return docs

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp('pack')
    docs = _docs()
    tok = train_tokenizer((x['text'] for x in docs), vocab_size=1024)
    save_tokenizer(tok, d / 'tokenizer')
    cfg = PackConfig(seq_len=128, shard_tokens=128 * 100, seed=5)
    man = pack_documents(docs, tok, cfg, d / 'packed', weights=WEIGHTS)
    return d, docs, tok, man

def test_tokenizer_loads_with_autotokenizer(built):
    from transformers import AutoTokenizer
    d, docs, *_ = built
    tok = AutoTokenizer.from_pretrained(d / 'tokenizer')
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4, 5, 6]
    assert tok.convert_tokens_to_ids(['<|endoftext|>', '<fim_prefix>', '<fim_middle>', '<fim_suffix>', '<fim_pad>',
                                      '<|im_start|>', '<|im_end|>']) == list(range(7))
    assert tok.bos_token_id == tok.eos_token_id == 0 and len(tok) == 1024
    text = docs[0]['text'][:500]
    assert tok.decode(tok(text)['input_ids'], clean_up_tokenization_spaces=False) == text
    msgs = [dict(role='user', content='hi'), dict(role='assistant', content='hello')]
    assert tok.apply_chat_template(msgs, tokenize=False) == \
        '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n'

def test_document_index_is_exact(built):
    d, docs, tok, man = built
    ds = PackedDataset(d / 'packed')
    for src in WEIGHTS:
        originals = [x['text'] for x in docs if x['metadata']['source'] == src]
        info = man['sources'][src]
        assert info['docs'] == len(originals) == len(ds.doc_starts[src])
        flat = np.concatenate([ds.tokens(src, i) for i in range(ds.n_seqs(src))]).astype(np.int64)
        assert len(flat) == info['seqs'] * 128 and info['tokens'] <= len(flat) < info['tokens'] + 128
        st = np.append(ds.doc_starts[src], info['tokens'])
        assert st[0] == 0 and (np.diff(st) > 0).all()
        n_fim = 0
        for j, text in enumerate(originals):
            ids = flat[st[j]:st[j + 1]]
            assert ids[-1] == 0 and (ids[:-1] != 0).all()         # one <|endoftext|>, at the end
            s = tok.decode(ids[:-1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            n_fim += s.startswith('<fim_prefix>')
            assert fim_inverse(s) == text, (src, j)
        assert n_fim == info['fim_docs'] and 0.3 < n_fim / len(originals) < 0.7
        assert (flat[info['tokens']:] == 0).all()                 # padding after the last document

def test_positions_and_labels(built):
    d, *_ = built
    b = next(Loader(d / 'packed', 16, seed=0))
    ids, pos, lab, doc = (b[k].numpy() for k in ('input_ids', 'position_ids', 'labels', 'document_ids'))
    for r in range(len(ids)):
        real = (lab[r] != -100).sum()
        starts = np.flatnonzero(pos[r][:real] == 0)
        assert starts[0] == 0 and all(ids[r][t - 1] == 0 for t in starts[1:])
        eos = np.flatnonzero(ids[r][:real - 1] == 0) + 1
        assert set(eos) <= set(starts)
        assert (np.diff(doc[r]) >= 0).all() and doc[r][0] == 0 and doc[r].max() == len(starts) - 1

RESUME = textwrap.dedent('''
    import json, sys, numpy as np
    from stablecode.packing import Loader
    packed, state_in, state_out, out, n_before, n_after = sys.argv[1:7]
    l = Loader(packed, 8, rank=1, world_size=2, seed=3)
    if state_in != '-': l.load_state_dict(json.load(open(state_in)))
    for _ in range(int(n_before)): next(l)
    if state_out != '-': json.dump(l.state_dict(), open(state_out, 'w'))
    bs = [next(l) for _ in range(int(n_after))]
    np.savez(out, ids=np.stack([b['input_ids'].numpy() for b in bs]), pos=np.stack([b['position_ids'].numpy() for b in bs]),
             lab=np.stack([b['labels'].numpy() for b in bs]))
''')

def test_resume_in_fresh_process(built, tmp_path):
    d, *_ = built
    script = tmp_path / 'resume.py'; script.write_text(RESUME)
    run = lambda *a: subprocess.run([sys.executable, str(script), str(d / 'packed'), *map(str, a)], check=True,
                                    capture_output=True, text=True, cwd=ROOT)
    run('-', tmp_path / 'state.json', tmp_path / 'a.npz', 7, 4)            # 7 batches, save, 4 more
    assert json.loads((tmp_path / 'state.json').read_text())['step'] == 7
    run(tmp_path / 'state.json', '-', tmp_path / 'b.npz', 0, 4)            # fresh process: restore, 4 batches
    a, b = np.load(tmp_path / 'a.npz'), np.load(tmp_path / 'b.npz')
    for k in ('ids', 'pos', 'lab'): assert (a[k] == b[k]).all()
    run('-', '-', tmp_path / 'c.npz', 0, 11)                               # same seed from scratch: batches 7..10 agree
    assert (np.load(tmp_path / 'c.npz')['ids'][7:] == a['ids']).all()

def test_state_mismatch_is_an_error(built):
    d, *_ = built
    s = Loader(d / 'packed', 8, seed=3).state_dict()
    with pytest.raises(ValueError, match="'seed'"): Loader(d / 'packed', 8, seed=4).load_state_dict(s)
    with pytest.raises(ValueError, match="'micro_batch'"): Loader(d / 'packed', 4, seed=3).load_state_dict(s)

def test_ranks_disjoint_and_seeded(built):
    d, _, _, man = built
    ds = PackedDataset(d / 'packed')
    natural = {s: v['seqs'] for s, v in man['sources'].items()}          # one epoch of every source
    world, B = 4, 4
    steps = int(0.9 * sum(natural.values())) // (world * B)
    seen = {}
    for r in range(world):
        l = Loader(ds, B, rank=r, world_size=world, seed=9, weights=natural)
        for _ in range(steps):
            b = next(l)
            for s, i in zip(b['sources'], b['seq_index']):
                assert (s, i) not in seen, f"rank {r} got {(s, i)} already seen by rank {seen[(s, i)]}"
                seen[(s, i)] = r
    assert len(seen) == steps * world * B
    x = next(Loader(ds, B, seed=9))['input_ids']
    assert (x == next(Loader(ds, B, seed=9))['input_ids']).all() and not (x == next(Loader(ds, B, seed=10))['input_ids']).all()

def test_proportions_match_weights(built):
    d, *_ = built
    ls = [Loader(d / 'packed', 16, rank=r, world_size=2, seed=1) for r in range(2)]
    seqs, toks = Counter(), Counter()
    for _ in range(50):
        for l in ls:
            b = next(l)
            real = (b['labels'] != -100).sum(1).tolist()
            for s, n in zip(b['sources'], real): seqs[s] += 1; toks[s] += n
    n, t = sum(seqs.values()), sum(toks.values())
    assert n == 1600
    for s, w in WEIGHTS.items():
        assert abs(seqs[s] / n - w) < 0.02, (s, seqs[s] / n)
        assert abs(toks[s] / t - w) < 0.02, (s, toks[s] / t)

def test_grouped_documents_keep_fim_in_one_file(tmp_path):
    from stablecode.packing import _group_documents
    docs = [dict(text=f"# file {i}\nx = {i}\n", id=str(i), metadata=dict(source='code', repo=f"r{i // 3}"))
            for i in range(9)]
    groups = list(_group_documents(docs, 'repo', 10_000))
    assert len(groups) == 3 and all(len(sp) == 3 for _, sp in groups)
    rec, spans = groups[1]
    assert [rec['text'][a:b] for a, b in spans] == [docs[i]['text'] for i in (3, 4, 5)]
    tok = train_tokenizer((x['text'] for x in docs * 20), vocab_size=320)
    man = pack_documents(docs, tok, PackConfig(seq_len=32, group_by='repo', fim_scope='file', fim_rate=1.0),
                         tmp_path / 'p')
    assert man['sources']['code']['docs'] == 3 and man['sources']['code']['fim_docs'] == 3

def test_cli_bad_mixture(tmp_path, capsys):
    assert cli(['build', '--mixture', str(tmp_path / 'nope.yaml'), '--out', str(tmp_path / 'o')]) == 2
    assert 'nope.yaml' in capsys.readouterr().err

def test_cli_build_then_repack_without_rebuilding_corpus(tmp_path):
    from stablecode.data import mixture_preset
    mix = tmp_path / 'small.yaml'
    mixture_preset('tiny', max_files=25, math_count=60).to_yaml(mix)
    out = tmp_path / 'data'
    exe = Path(sys.executable).parent / 'stablecode'
    cmd = [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from stablecode.cli import main; sys.exit(main())']
    r = subprocess.run(cmd + ['data', 'build', '--mixture', str(mix), '--out', str(out)], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE='1'))
    assert r.returncode == 0, r.stderr[-3000:]
    man = json.loads((out / 'manifest.json').read_text())
    code = man['streams']['code']                                          # the tiny data preset's two streams
    assert man['corpus_rebuilt'] and set(man['streams']) == {'code', 'long_context'}
    assert set(code['tokens_per_source']) == {'stdlib', 'pydoc', 'math'} and code['seq_len'] == 128
    assert all(n > 1000 for n in code['tokens_per_source'].values())
    assert abs(sum(code['weights'].values()) - 1) < 1e-9 and code['weights']['stdlib'] == pytest.approx(0.8)
    assert man['corpus']['totals']['docs_kept'] > 0 and 'near_dedup' in man['corpus']['per_source']['stdlib']
    assert man['tokenizer']['special_ids'] == {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    corpus_mtime = (out / 'corpus' / 'manifest.json').stat().st_mtime_ns
    tok_mtime = (out / 'tokenizer' / 'tokenizer.json').stat().st_mtime_ns
    assert cli(['build', '--mixture', str(mix), '--out', str(out), '--pack', 'code.seq_len=256', '--pack', 'code.fim_rate=0.9']) == 0
    man2 = json.loads((out / 'manifest.json').read_text())
    assert not man2['corpus_rebuilt'] and (out / 'corpus' / 'manifest.json').stat().st_mtime_ns == corpus_mtime
    assert (out / 'tokenizer' / 'tokenizer.json').stat().st_mtime_ns == tok_mtime
    assert man2['hashes']['packs']['long_context'] == man['hashes']['packs']['long_context']     # untouched stream kept
    ds = PackedDataset(out / man2['streams']['code']['dir'])
    assert ds.seq_len == 256 and ds.manifest['pack_config']['fim_rate'] == 0.9
    assert sum(man2['streams']['code']['tokens_per_source'].values()) > sum(code['tokens_per_source'].values())  # more FIM sentinels
    assert cli(['build', '--mixture', str(mix), '--out', str(out), '--pack', 'cod.seq_len=256']) == 2    # a typo is an error

def test_hub_tokenizer_adds_missing_special_tokens(tmp_path):
    "The full-scale loader path, on a local directory: a base tokenizer without FIM/ChatML tokens gets them added."
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import PreTrainedTokenizerFast
    from stablecode.config import ConfigError
    from stablecode.tokenizer import (TokenizerConfig, build_tokenizer, hub_tokenizer, padded_vocab_size, set_chat_template,
                                      special_ids)
    t = Tokenizer(models.BPE()); t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(["def f(): pass\n"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=['<|endoftext|>', '<fim_prefix>'], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=t, eos_token='<|endoftext|>').save_pretrained(tmp_path / 'base')
    n0 = t.get_vocab_size()
    tok = hub_tokenizer(str(tmp_path / 'base'))
    ids = special_ids(tok)
    assert ids['<|endoftext|>'] == 0 and ids['<fim_prefix>'] == 1                     # existing ids kept
    assert sorted(ids[k] for k in ('<fim_middle>', '<fim_suffix>', '<fim_pad>', '<|im_start|>', '<|im_end|>')) == \
        list(range(n0, n0 + 5))
    assert padded_vocab_size(len(tok)) % 64 == 0 and padded_vocab_size(len(tok)) >= len(tok)
    assert tok.apply_chat_template([dict(role='user', content='x')], tokenize=False) == '<|im_start|>user\nx<|im_end|>\n'
    with pytest.raises(ValueError, match='lacks special tokens'): hub_tokenizer(str(tmp_path / 'base'), add_missing=False)
    # StableCode alpha's format writes no special token: only the FIM tokens are added, the vocabulary stays as it was
    alpha = hub_tokenizer(str(tmp_path / 'base'), prompt_format='alpha')
    assert len(alpha) == n0 + 3 and '<|im_start|>' not in alpha.get_vocab() and '<|im_start|>' not in special_ids(alpha)
    assert alpha.apply_chat_template([dict(role='user', content='x')], tokenize=False, add_generation_prompt=True) == \
        '###Instruction\nx\n\n###Response\n'
    with pytest.raises(ValueError, match=r"the chatml prompt format needs special tokens \['<\|im_start\|>', '<\|im_end\|>'\]"):
        set_chat_template(alpha, 'chatml')
    cfg = TokenizerConfig(kind='hub', name=str(tmp_path / 'base'), prompt_format='alpha')
    build_tokenizer(cfg, None, tmp_path / 'out')
    saved = json.loads((tmp_path / 'out' / 'stablecode_tokenizer.json').read_text())
    assert saved['size'] == n0 + 3 and set(saved['special_ids']) == {'<|endoftext|>', '<fim_prefix>', '<fim_middle>', '<fim_suffix>', '<fim_pad>'}
    with pytest.raises(ConfigError, match="unknown prompt_format 'vicuna'"): TokenizerConfig(prompt_format='vicuna')


# ---------------------------------------------------------------- parallel packing (pack_corpus)

def _corpus(d: Path, docs: list, shards: int) -> Path:
    import gzip
    d.mkdir(parents=True)
    n = len(docs)
    for k in range(shards):
        with gzip.open(d / f"{k:05d}.jsonl.gz", 'wt', encoding='utf-8') as f:
            f.writelines(json.dumps(x) + '\n' for x in docs[k * n // shards:(k + 1) * n // shards])
    return d


def _batches(packed, steps=12):
    l = Loader(packed, 6, seed=2, torch_tensors=False)
    return [l.batch_at(t) for t in range(steps)]


def test_pack_corpus_same_samples_for_any_task_count_with_groups(tmp_path):
    from stablecode.packing import pack_corpus
    # repositories of 1-6 files, runs crossing shard and task boundaries, and a source without repositories
    docs, k = [], 0
    for r in range(30):
        for j in range(1 + r % 6):
            docs.append(dict(text=f"# repo {r} file {j}\ndef f_{k}(x):\n    return x * {k} + {r}\n", id=f"c{k}",
                             metadata=dict(source='code', repository=f"org/r{r}", path=f"m{j}.py"))); k += 1
        if r % 4 == 0: docs.append(dict(text=f"Note {r}: {r} + 1 = {r + 1}.\n", id=f"n{r}", metadata=dict(source='notes')))
    tok = train_tokenizer((x['text'] for x in docs * 3), vocab_size=320)
    cfg = PackConfig(seq_len=48, group_by='repository', fim_scope='file', fim_rate=0.5, group_chars=250, seed=3)
    corpus = _corpus(tmp_path / 'corpus', docs, 4)
    ref = pack_documents(docs, tok, cfg, tmp_path / 'ref', weights=dict(code=0.7, notes=0.3))
    want = _batches(tmp_path / 'ref')
    for t in (1, 3, 7):
        man = pack_corpus(corpus, tok, cfg, tmp_path / f"p{t}", tasks=t, weights=dict(code=0.7, notes=0.3))
        assert {s: (v['tokens'], v['docs'], v['fim_docs']) for s, v in man['sources'].items()} == \
               {s: (v['tokens'], v['docs'], v['fim_docs']) for s, v in ref['sources'].items()}, t
        for a, b in zip(_batches(tmp_path / f"p{t}"), want):
            assert (a['input_ids'] == b['input_ids']).all() and (a['document_ids'] == b['document_ids']).all(), t
    assert ref['sources']['notes']['docs'] == 8                  # records without a repository stay single
    assert ref['sources']['code']['docs'] > 30                   # long repositories are cut at group_chars


def test_pack_corpus_resumes_after_a_failed_task(built, tmp_path, monkeypatch):
    from stablecode import packing
    _, docs, tok, _ = built
    corpus = _corpus(tmp_path / 'corpus', docs, 3)
    cfg = PackConfig(seq_len=128, seed=5)
    real = packing.PackTask.run
    ran = []
    def flaky(self, data=None, rank=0, world_size=1):
        ran.append(rank)
        if rank == 2 and ran.count(2) == 1: raise RuntimeError('simulated crash of pack task 2')
        return real(self, data, rank, world_size)
    monkeypatch.setattr(packing.PackTask, 'run', flaky)
    with pytest.raises(RuntimeError, match='simulated crash'):
        packing.pack_corpus(corpus, tok, cfg, tmp_path / 'packed', tasks=3, weights=WEIGHTS)
    assert not (tmp_path / 'packed').exists()
    man = packing.pack_corpus(corpus, tok, cfg, tmp_path / 'packed', tasks=3, weights=WEIGHTS)
    assert ran == [0, 1, 2, 2]                                   # only the failed task ran again
    ref = pack_documents(docs, tok, cfg, tmp_path / 'ref', weights=WEIGHTS)
    assert {s: v['tokens'] for s, v in man['sources'].items()} == {s: v['tokens'] for s, v in ref['sources'].items()}
    for a, b in zip(_batches(tmp_path / 'packed'), _batches(tmp_path / 'ref')):
        assert (a['input_ids'] == b['input_ids']).all() and a['sources'] == b['sources']
    with pytest.raises(ValueError, match='tasks must be >= 1'):
        packing.pack_corpus(corpus, tok, cfg, tmp_path / 'x', tasks=0)
