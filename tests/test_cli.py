"""The installed `stablecode` console script, run in a subprocess as a user runs it."""
import json, os, subprocess, sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXE = BIN/'stablecode'


def sh(*args, cwd=None, env=None):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, **(env or {})})


def test_console_script_installed():
    assert EXE.exists(), f"{EXE} missing: install the package (pip install -e .) so the console script exists"


def test_help_lists_subcommands():
    r = sh('--help')
    assert r.returncode == 0, r.stderr
    for name in ('run', 'quickstart', 'data', 'eval'):
        assert f"\n  {name} " in r.stdout
    r = sh()
    assert r.returncode == 2 and 'usage: stablecode SUBCOMMAND' in r.stdout
    r = sh('run', '--help')
    assert r.returncode == 0 and '--from STAGE' in r.stdout and '--only STAGE' in r.stdout and '--dry-run' in r.stdout


def test_unknown_and_missing_subcommands():
    r = sh('frobnicate')
    assert r.returncode == 2 and "unknown subcommand 'frobnicate'" in r.stderr and 'Traceback' not in r.stderr
    # a registered subcommand whose module is not installed: a message and exit code 2, no traceback
    code = ("import sys; from stablecode import cli\n"
            "cli.COMMANDS['later'] = ('stablecode.not_written_yet:cli', 'x')\nsys.exit(cli.main(['later']))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 2 and 'stablecode.not_written_yet is not part of this installation' in r.stderr
    assert 'Traceback' not in r.stderr


def _nb(path, params, body):
    nb = new_notebook(cells=[new_code_cell(params, metadata={'tags': ['parameters']}), new_code_cell(body)])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, str(path))


def test_stablecode_run_end_to_end(tmp_path):
    _nb(tmp_path/'s1.ipynb', "run_dir = ''\nk = 1", "open(run_dir + '/s1.txt', 'w').write(str(k ** 2))")
    _nb(tmp_path/'s2.ipynb', "run_dir = ''",
        "# check the input\nv = int(open(run_dir + '/s1.txt').read())\nassert v < 50, f'value {v} too large'\n"
        "open(run_dir + '/s2.txt', 'w').write(str(v + 1))")
    y = tmp_path/'cli-run.yaml'
    y.write_text("stages:\n  - {name: one, notebook: s1.ipynb, parameters: {k: 6}}\n  - {name: two, notebook: s2.ipynb}\n")
    r = sh('run', str(y))
    assert r.returncode == 0, r.stderr
    rd = tmp_path/'cli-run'
    assert (rd/'s2.txt').read_text() == '37'
    assert "run 'cli-run' done" in r.stdout and '[one] executing' in r.stdout
    assert 'Executing' in r.stderr and 'cell/s' in r.stderr          # papermill's per-cell progress bar
    assert json.loads((rd/'manifest.json').read_text())['status'] == 'done'
    # again: both skipped
    r = sh('run', str(y), '--no-progress')
    assert r.returncode == 0 and '[one] done with config' in r.stdout and 'skipped' in r.stdout
    # a failing cell: exit 1, message names the executed notebook and the cell, no traceback from the runner
    y.write_text(y.read_text().replace('k: 6', 'k: 8'))
    r = sh('run', str(y), '--no-progress')
    assert r.returncode == 1
    assert "stage 'two' failed: AssertionError: value 64 too large" in r.stderr
    assert str(rd/'s2.ipynb') in r.stderr and '# check the input' in r.stderr
    assert 'Traceback (most recent call last)' not in r.stderr
    assert (rd/'s1.txt').read_text() == '64'
    # the dry-run plan
    r = sh('run', str(y), '--dry-run')
    assert r.returncode == 0 and 'one: skip (done, same config)' in r.stdout and 'two: resume' in r.stdout
