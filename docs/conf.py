# Sphinx configuration of the stablecode report. Built by scripts/build_docs.sh, which stages the source tree
# (docs/prepare.py) in docs/_build/src and runs `sphinx-build -c docs -W ...`. Notebooks are rendered as they are,
# never executed here: the executed ones come from the latest tiny run (papermill_runs/tiny-cpu/).
import re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

project = 'stablecode'
author = 'stablecode developers'
copyright = '2026, stablecode developers'
try:
    from stablecode import __version__ as release
except Exception:  # the build still reports the import error through autodoc
    release = ''
version = release

extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.autosummary', 'sphinx.ext.viewcode',
              'sphinxcontrib.bibtex']
root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']
source_suffix = {'.rst': 'restructuredtext', '.md': 'myst-nb', '.ipynb': 'myst-nb'}

# MyST-NB: render stored outputs only
nb_execution_mode = 'off'
nb_merge_streams = True
myst_enable_extensions = ['colon_fence', 'dollarmath', 'deflist']
myst_heading_anchors = 3
# notebooks carry papermill/nbdev metadata that is not MyST's concern
suppress_warnings = ['mystnb.unknown_mime_type']

# API reference
autodoc_default_options = {'members': True, 'member-order': 'bysource'}
autodoc_typehints = 'signature'
autosummary_generate = False
autodoc_inherit_docstrings = False  # inherited transformers docstrings are not ours (nor valid RST)
autodoc_mock_imports = []

# citations
bibtex_bibfiles = ['references.bib']
bibtex_default_style = 'unsrt'
bibtex_reference_style = 'author_year'

# The Jupyter Book theme (sphinx-book-theme on pydata-sphinx-theme): a wide reading column, a right-hand table of
# contents per page, light and dark mode, search. Everything it serves is in _static (no CDN fonts or scripts);
# tests/test_docs.py checks that no page loads anything from another host.
html_theme = 'sphinx_book_theme'
html_title = 'stablecode: how Stable Code 3B is made'
html_theme_options = {
    'home_page_in_toc': True,
    'show_toc_level': 2,            # the right-hand contents lists sections and their subsections
    'use_download_button': True,    # the page's source (.ipynb) and "print to PDF"
    'use_fullscreen_button': False,
    'navigation_with_keys': False,
    'show_navbar_depth': 1,
    'announcement': '',
    'extra_footer': '',
}
html_context = {'default_mode': 'auto'}   # follows the reader's system setting until the switch is used
html_static_path = ['_static']
html_css_files = ['report.css']
html_js_files = []
html_favicon = 'favicon.svg'  # a page without one logs a 404 in the browser console
html_copy_source = True
html_show_sourcelink = False
# the staged tree holds copies of notebooks offered for download (docs/prepare.py); they are not pages
exclude_patterns += ['_notebooks']
html_last_updated_fmt = None


def _markdownish_docstring(app, what, name, obj, options, lines):
    "Docstrings here are written in Markdown (nbdev style): render `code` as code and keep stray RST markup inert."
    for i, l in enumerate(lines):
        l = re.sub(r'(?<!`)`([^`\n]+)`(?!`)', r'``\1``', l)       # `x` -> ``x`` (inline code)
        l = re.sub(r'(?<![\w`\\])\*(?=\w)(?![^`]*``)', r'\\*', l)  # a lone *args is not emphasis
        l = re.sub(r'(\w)_(?=\s|$|[.,;:)])', r'\1\\_', l)          # name_ is not a reference
        l = l.replace('|', '\\|') if '``' not in l else l        # | is not a substitution
        lines[i] = l


def setup(app):
    app.connect('autodoc-process-docstring', _markdownish_docstring)
