"""The import graph of the package: no cycle between its modules (imports inside functions included), and no module
imports one of a later chapter (the notebook order: config -> data -> model -> generate -> ... -> eval -> quantize)."""
import ast, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'stablecode'


def chapters() -> dict[str, str]:
    "module name -> the notebook that exports it (its chapter), from each notebook's `#| default_exp`."
    out = {}
    for nb in sorted((ROOT / 'nbs').glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            src = ''.join(c['source'])
            if c['cell_type'] == 'code' and src.startswith('#| default_exp '):
                out[src.split()[2]] = nb.stem
                break
    return out


def imports(path: Path) -> set[str]:
    "The package modules `path` imports anywhere in its code (module level, functions, try blocks)."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level:                                  # from .x import y / from . import x
                names = [mod] if mod else [a.name for a in node.names]
            elif mod == 'stablecode': names = [a.name for a in node.names]
            elif mod.startswith('stablecode.'): names = [mod.split('.')[1]]
            else: continue
            out.update(n.split('.')[0] for n in names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split('.')[1] for a in node.names if a.name.startswith('stablecode.'))
    return {m for m in out if (PKG / f'{m}.py').is_file()} - {path.stem}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports(p) for p in PKG.glob('*.py') if not p.stem.startswith('_')}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    "Each import cycle once, as a path that returns to its start."
    found, seen = [], set()
    def walk(m, path):
        for n in sorted(g.get(m, ())):
            if n in path:
                cyc = path[path.index(n):]
                key = frozenset(cyc)
                if key not in seen: seen.add(key); found.append(cyc + [n])
            else: walk(n, path + [n])
    for m in sorted(g): walk(m, [m])
    return found


def test_the_graph_sees_function_level_imports(tmp_path):
    f = tmp_path / 'generate.py'
    f.write_text('import os\nfrom .tokenizer import X\ndef f():\n    from .quantize import load_backend\n'
                 'try: from stablecode import sandbox_ray\nexcept ImportError: pass\n')
    assert imports(f) == {'tokenizer', 'quantize', 'sandbox_ray'}
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c', 'a']]


def test_no_import_cycle():
    g = graph()
    assert {'generate', 'eval', 'quantize'} <= set(g)
    assert cycles(g) == []


def test_no_module_imports_a_later_chapter():
    ch, g = chapters(), graph()
    bad = [f"{m} ({ch[m]}) imports {n} ({ch[n]})" for m, ns in g.items() for n in ns
           if m in ch and n in ch and ch[n] > ch[m]]
    assert bad == []


def test_evaluation_does_not_load_quantize():
    "A fresh interpreter that imports evaluation (and with it generation and its registry) never loads quantization."
    code = ("import sys, stablecode.eval; from stablecode.generate import BACKENDS; "
            "print(sorted(BACKENDS), 'stablecode.quantize' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["['hf',", "'openai']", 'False']
