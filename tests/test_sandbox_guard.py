"""The isolation rule has one owner, the sandbox: where it has no namespaces, every entry point that executes model
code refuses with one line that names the opt-in, unless its caller opts in. bubblewrap is hidden from a subprocess
(its PATH holds `prlimit` and nothing else), as on a machine without it."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path

CALLS = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from stablecode import sandbox
    from stablecode.benchmarks import load_task
    from stablecode.eval import CanonicalBackend, evaluate, execution_outcomes
    from stablecode.dpo import recheck
    from stablecode.self_align import execution_filter
    from stablecode.quantize import pass_at_1, random_checkpoint
    out = Path(sys.argv[1])
    ps = load_task('exercises', limit=1)
    sol = ps[0].solution(ps[0].canonical)
    calls = {
        'sandbox.run': lambda: sandbox.run('print(1)'),
        'sandbox.run_batch': lambda: sandbox.run_batch(['print(1)'], progress=False),
        'eval.evaluate': lambda: evaluate(ps, CanonicalBackend(ps), out / 'ev', progress=False),
        'eval.execution_outcomes': lambda: execution_outcomes(ps, [[ps[0].canonical]], progress=False),
        'dpo.recheck': lambda: recheck(dict(chosen_program=sol, rejected_program='x = 1\\n', tests=ps[0].tests,
                                            chosen_outcome='all_pass', rejected_outcome='runtime_error')),
        'self_align.execution_filter': lambda: execution_filter([dict(implementation='def f():\\n    return 1\\n',
                                                                      tests='assert f() == 1\\n')]),
        'quantize.pass_at_1': lambda: pass_at_1({'hf:fp32': random_checkpoint(out / 'ckpt')}, out / 'q',
                                                {'exercises': 1}, progress=False),
    }
    got = {'report': sandbox.isolation_report()}
    for name, f in calls.items():
        try: r = f(); got[name] = 'ran'
        except sandbox.SandboxRefused as e: got[name] = str(e)
    print(json.dumps(got))
''')


def _calls(tmp_path, **env) -> dict:
    path = tmp_path / 'bin'; path.mkdir(exist_ok=True)
    os.symlink(shutil.which('prlimit'), path / 'prlimit') if not (path / 'prlimit').exists() else None
    e = {k: v for k, v in os.environ.items() if k not in ('STABLECODE_SANDBOX', 'STABLECODE_ALLOW_WEAK_SANDBOX')}
    r = subprocess.run([sys.executable, '-c', CALLS, str(tmp_path)], capture_output=True, text=True, timeout=600,
                       env={**e, 'PATH': str(path), **env})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_every_entry_point_refuses_without_namespaces(tmp_path):
    got = _calls(tmp_path)
    assert got.pop('report').startswith('rlimits only (no namespaces: bwrap or prlimit not found')
    assert len(got) == 7
    for name, msg in got.items():
        assert msg != 'ran', f"{name} executed model code without namespaces"
        assert '\n' not in msg and '--allow-weak-sandbox' in msg and 'STABLECODE_ALLOW_WEAK_SANDBOX=1' in msg, (name, msg)


def test_the_opt_in_lets_every_entry_point_run(tmp_path):
    got = _calls(tmp_path, STABLECODE_ALLOW_WEAK_SANDBOX='1')
    assert got.pop('report').startswith('rlimits only')
    assert got == {k: 'ran' for k in got} and len(got) == 7, got


def test_the_argument_opts_in_for_one_call():
    "`allow_weak=True` is the caller's own opt-in; STABLECODE_SANDBOX=rlimits forces the weak level to try it."
    code = textwrap.dedent('''
        from stablecode.sandbox import run, SandboxRefused
        try: run('print(1)'); print('ran')
        except SandboxRefused: print('refused')
        print(run('print(1)', allow_weak=True).status)
    ''')
    e = {k: v for k, v in os.environ.items() if k != 'STABLECODE_ALLOW_WEAK_SANDBOX'}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env={**e, 'STABLECODE_SANDBOX': 'rlimits'})
    assert r.stdout.split() == ['refused', 'passed'], r.stderr[-2000:]
