"""Write README.md from nbs/index.ipynb (nbdev's own `nbdev-readme` needs Quarto, which is not installed here).

Markdown cells are copied as they are; code cells are shown as fenced Python. `--check` exits 1 when README.md
differs from what the index notebook gives.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render() -> str:
    nb = json.loads((root/'nbs'/'index.ipynb').read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if c['cell_type'] == 'markdown' else f"```python\n{src}\n```")
    head = '<!-- generated from nbs/index.ipynb by scripts/make_readme.py; edit the notebook, not this file -->\n'
    return head + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    want, readme = render(), root/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != want:
            sys.exit('FAIL: README.md is out of date with nbs/index.ipynb (run: python scripts/make_readme.py)')
        print('README.md in sync with nbs/index.ipynb')
    else: readme.write_text(want)
