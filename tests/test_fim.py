"FIM transform: exact inverse over random documents (hypothesis), determinism, rates, within-file spans."
from collections import Counter
from hypothesis import given, settings, strategies as st, assume
from stablecode.fim import (fim_transform, fim_inverse, fim_split, fim_join, fim_token_ids, has_sentinel,
                            FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX)

# Text with every kind of code point (surrogates excluded: not valid in str -> UTF-8), plus an alphabet that makes
# near-sentinel strings like "<fim_" and "middle>" likely.
docs = st.one_of(st.text(), st.text(alphabet=st.sampled_from(list("<fim_prefixsuddle>\n é🐍")), max_size=60))

@settings(max_examples=400, deadline=None)
@given(doc=docs, seed=st.integers(0, 2**32), idx=st.integers(0, 10**9),
       fim_rate=st.sampled_from([0.0, 0.5, 1.0]), spm_rate=st.sampled_from([0.0, 0.5, 1.0]))
def test_inverse_roundtrip(doc, seed, idx, fim_rate, spm_rate):
    assume(not has_sentinel(doc))
    s = fim_transform(doc, seed=seed, doc_index=idx, fim_rate=fim_rate, spm_rate=spm_rate)
    assert fim_inverse(s) == doc
    assert s == fim_transform(doc, seed=seed, doc_index=idx, fim_rate=fim_rate, spm_rate=spm_rate)
    if fim_rate == 1.0:
        assert s.startswith(FIM_PREFIX) and s.count(FIM_MIDDLE) == 1 and s.count(FIM_SUFFIX) == 1
        sp = fim_split(doc, seed=seed, doc_index=idx, fim_rate=1.0, spm_rate=spm_rate)
        assert sp.prefix + sp.middle + sp.suffix == doc
        assert sp.mode == ('spm' if spm_rate == 1.0 else 'psm' if spm_rate == 0.0 else sp.mode)
    if fim_rate == 0.0: assert s == doc

@settings(max_examples=200, deadline=None)
@given(pre=st.text(), suf=st.text(), mode=st.sampled_from(['psm', 'spm']))
def test_empty_middle(pre, suf, mode):
    from stablecode.fim import FimSplit
    assume(not has_sentinel(pre + suf))
    assert fim_inverse(fim_join(FimSplit(mode, pre, '', suf))) == pre + suf

@settings(max_examples=200, deadline=None)
@given(files=st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=6), idx=st.integers(0, 10**6))
def test_within_file(files, idx):
    doc = ''.join(files)
    assume(not has_sentinel(doc))
    spans, o = [], 0
    for f in files: spans.append((o, o + len(f))); o += len(f)
    sp = fim_split(doc, seed=0, doc_index=idx, fim_rate=1.0, spans=spans)
    a, b = len(sp.prefix), len(sp.prefix) + len(sp.middle)
    assert any(s <= a <= b <= e for s, e in spans)
    assert fim_inverse(fim_join(sp)) == doc

def test_spm_layout_is_starcoders():
    from stablecode.fim import FimSplit
    assert fim_join(FimSplit('spm', 'P', 'M', 'S')) == '<fim_prefix><fim_suffix>S<fim_middle>PM'
    assert fim_join(FimSplit('psm', 'P', 'M', 'S')) == '<fim_prefix>P<fim_suffix>S<fim_middle>M'

def test_per_document_independence_and_rates():
    doc = "x = 1\ny = 2\n" * 5
    a = [fim_transform(doc, seed=11, doc_index=i) for i in range(2000)]
    b = [fim_transform(doc, seed=11, doc_index=i) for i in reversed(range(2000))][::-1]
    assert a == b                                      # order of processing does not matter
    assert a != [fim_transform(doc, seed=12, doc_index=i) for i in range(2000)]
    c = Counter(fim_split(doc, seed=11, doc_index=i).mode for i in range(2000))
    assert abs(c[None] / 2000 - 0.5) < 0.04
    assert abs(c['spm'] / (c['spm'] + c['psm']) - 0.5) < 0.05

def test_sentinel_text_untouched_and_bad_rates():
    d = "tok = '<fim_suffix>'\n"
    assert all(fim_transform(d, seed=0, doc_index=i, fim_rate=1.0) == d for i in range(10))
    assert fim_inverse("<fim_prefix> just text") == "<fim_prefix> just text"
    import pytest
    with pytest.raises(ValueError, match='fim_rate'): fim_transform("a", seed=0, fim_rate=1.5)

def test_token_ids_roundtrip_parts():
    enc = lambda parts: [[ord(c) + 10 for c in t] for t in parts]
    ids = {FIM_PREFIX: 1, FIM_MIDDLE: 2, FIM_SUFFIX: 3}
    doc = "abcdefghij"
    for i in range(50):
        sp = fim_split(doc, seed=5, doc_index=i, fim_rate=1.0)
        t = fim_token_ids(sp, enc, ids)
        assert len(t) == len(doc) + 3
        assert sorted(x for x in t if x >= 10) == sorted(ord(c) + 10 for c in doc)
