"""Adversarial tests of the execution sandbox: each attack is contained, scored as not passed, and leaves no process
running and no file changed outside temporary directories."""
import os, socket, subprocess, sys, threading, time, textwrap, json
from pathlib import Path
import pytest
from procs import listening_port, procs
from stablecode import sandbox
from stablecode.sandbox import run, run_batch, isolation, toolchains

BWRAP = isolation() == 'bwrap'
need_ns = pytest.mark.skipif(not BWRAP, reason=f"needs namespaces; active isolation: {sandbox.isolation_report()}")
ROOT = Path(__file__).resolve().parents[1]


_procs = procs


def _snapshot(*dirs):
    snap = {}
    for d in dirs:
        for f in Path(d).rglob('*'):
            try: st = f.lstat(); snap[str(f)] = (st.st_size, st.st_mtime_ns, st.st_mode)
            except OSError: pass
    return snap


@pytest.fixture
def victim():
    "A world-writable directory outside any temporary directory, visible to the sandbox (only a read-only view saves it)."
    d = ROOT/'tests'/f'.sandbox_victim_{os.getpid()}'
    d.mkdir(exist_ok=True); os.chmod(d, 0o777)
    (d/'keep.txt').write_text('precious'); os.chmod(d/'keep.txt', 0o666)
    before = _snapshot(d, '/etc')
    yield d
    after = _snapshot(d, '/etc')
    assert after == before, 'files outside the sandbox changed'
    for f in d.iterdir(): f.unlink()
    d.rmdir()


@pytest.fixture(autouse=True)
def no_strays():
    "After every test: no sandboxed program, bwrap or sleeper is left running."
    before = {p for p, _ in _procs('prog.py', 'bwrap', 'sleep 987')}
    yield
    deadline = time.time() + 3
    while True:
        left = [x for x in _procs('prog.py', 'bwrap', 'sleep 987') if x[0] not in before]
        if not left or time.time() > deadline: break
        time.sleep(0.1)
    assert not left, f"stray processes: {left}"


def test_baseline_pass_and_fail():
    assert run('assert 1 + 1 == 2', timeout=5).status == 'passed'
    r = run('def f(x):\n    return x\nassert f(2) == 3, "f(2) should be 3"', timeout=5)
    assert r.status == 'failed' and 'f(2) should be 3' in r.message


def test_infinite_loop():
    t = time.perf_counter()
    r = run('while True:\n    pass', timeout=1)
    assert r.status == 'timeout' and time.perf_counter() - t < 10


def test_sleeping_forever_is_a_timeout():
    r = run('import time\ntime.sleep(987)', timeout=1)
    assert r.status == 'timeout'


def test_fork_bomb():
    prog = textwrap.dedent('''
        import os
        n = 0
        while True:
            try:
                os.fork(); n += 1
            except OSError:
                pass
    ''')
    t = time.perf_counter()
    r = run(prog, timeout=2, nproc=32)
    assert r.status in ('timeout', 'failed', 'crashed') and time.perf_counter() - t < 15
    assert run('assert True', timeout=5).status == 'passed'     # the machine still forks


def test_memory_hog():
    assert run('x = bytearray(8 << 30)', timeout=5, memory_mb=256).status == 'oom'
    r = run('a = []\nwhile True:\n    a.append(bytearray(10 ** 7))', timeout=10, memory_mb=256)
    assert r.status == 'oom', r


@need_ns
def test_writing_outside_the_working_directory(victim):
    targets = ['/etc/sc_pwned', str(ROOT/'sc_pwned.txt'), str(victim/'new.txt'), str(victim/'keep.txt'), '/sc_pwned']
    prog = f"targets = {targets!r}\nok = 0\nfor t in targets:\n    try:\n        open(t, 'a').write('pwned'); ok += 1\n" \
           f"    except OSError as e:\n        print(t, e)\nassert ok == 0\nopen('mine.txt', 'w').write('fine')\n"
    r = run(prog, timeout=5)
    assert r.status == 'passed', r        # every write outside was refused; its own working directory is writable
    for t in targets[:3] + targets[4:]: assert not Path(t).exists()
    assert (victim/'keep.txt').read_text() == 'precious'


@need_ns
def test_deleting_files(victim):
    prog = f"import os, shutil\nos.remove({str(victim/'keep.txt')!r})\n"
    r = run(prog, timeout=5)
    # refused as read-only, or not even visible when the checkout lives under a path the sandbox replaces (/tmp)
    assert r.status == 'failed' and any(m in r.message for m in ('Read-only file system', 'No such file')), r
    r = run(f"import shutil\nshutil.rmtree({str(victim)!r})", timeout=5)
    assert r.status == 'failed'
    assert (victim/'keep.txt').read_text() == 'precious'


@need_ns
def test_socket_to_localhost():
    with listening_port() as (port, got):
        prog = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'leak')"
        r = run(prog, timeout=5)
        assert r.status == 'failed' and ('Network is unreachable' in r.message or 'refused' in r.message), r
        r = run("import urllib.request\nurllib.request.urlopen('http://example.org', timeout=2)", timeout=5)
        assert r.status == 'failed'
        time.sleep(0.3)
    assert got == []


@pytest.mark.parametrize('exit_line', ['import sys; sys.exit(0)', 'import os; os._exit(0)', 'raise SystemExit',
                                       'exit()', 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'])
def test_early_exit_is_never_a_pass(exit_line):
    prog = f"def add(a, b):\n    return a - b\n{exit_line}\nassert add(2, 2) == 4\n"
    r = run(prog, timeout=5)
    assert r.status != 'passed', r


def test_printing_the_marker_early_is_not_a_pass():
    "The marker is random per run, so guessing or printing a marker from another run does not help."
    other = run('print("hello")', timeout=5)
    assert other.status == 'passed' and other.stdout.strip() == 'hello'
    r = run('print("__SC_DONE_000000000000000000000000__")\nimport os; os._exit(0)', timeout=5)
    assert r.status == 'failed'


@pytest.mark.skipif(not BWRAP and os.geteuid() != 0,
                    reason='without namespaces and without a uid switch the program could kill the test runner itself')
def test_killing_the_parent():
    kill_all = 'os.kill(-1, signal.SIGKILL)\n' if BWRAP else ''   # without a PID namespace this would hit the runner
    prog = "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\n" + kill_all + "time.sleep(0.5)\nos._exit(0)\n"
    r = run(prog, timeout=5)
    assert r.status != 'passed', r
    r = run('import os, signal\nos.killpg(0, signal.SIGKILL)', timeout=5)
    assert r.status in ('crashed', 'failed'), r
    assert run('assert 2 * 2 == 4', timeout=5).status == 'passed'     # the harness is unharmed


def test_printing_a_gigabyte():
    t = time.perf_counter()
    r = run("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)", timeout=20)
    assert r.status in ('failed', 'crashed') and len(r.stdout) <= 1 << 20, r
    r = run("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stderr.write(block)", timeout=20)
    assert r.status in ('failed', 'crashed') and len(r.stderr) <= 1 << 20, r
    if toolchains()['bash'][0]:
        r = run('head -c 1073741824 /dev/zero | tr "\\0" x', language='bash', timeout=20)
        assert r.status in ('failed', 'crashed') and len(r.stdout) <= 1 << 20, r
    assert time.perf_counter() - t < 60


def test_background_process_does_not_outlive_the_program():
    prog = textwrap.dedent('''
        import os, subprocess, time
        subprocess.Popen(['sleep', '987'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(987)
            os._exit(0)
        time.sleep(0.2)
        os._exit(0)
    ''')
    r = run(prog, timeout=5)
    assert r.status == 'failed'
    # the `no_strays` fixture checks that neither `sleep 987` nor the double-forked daemon is still running


def test_cpu_time_limit_in_threads():
    "Several spinning threads hit the CPU limit or the deadline, whichever comes first."
    prog = "import threading\ndef spin():\n    while True: pass\nfor _ in range(4): threading.Thread(target=spin).start()\n"
    assert run(prog, timeout=2).status == 'timeout'


def test_file_size_limit():
    r = run("open('big.bin', 'wb').write(b'0' * (64 << 20))", timeout=10, file_mb=8)
    assert r.status != 'passed'


def test_batch_order_dedup_and_resume(tmp_path):
    jl = tmp_path/'r.jsonl'
    jobs = ['assert True', 'assert False', 'while True: pass', 'assert True',
            {'program': 'console.log(1)', 'language': 'js'} if toolchains()['javascript'][0] else 'print(1)']
    res = run_batch(jobs, jsonl=jl, timeout=1, progress=False, workers=2)
    assert [r.status for r in res] == ['passed', 'failed', 'timeout', 'passed', 'passed']
    lines = jl.read_text().splitlines()
    assert len(lines) == 4
    with open(jl, 'a') as f: f.write('{"key": "trunc')                # a crash mid-write
    res2 = run_batch(jobs + ['assert 3 > 2'], jsonl=jl, timeout=1, progress=False)
    assert [r.status for r in res2] == ['passed', 'failed', 'timeout', 'passed', 'passed', 'passed']
    recs = [json.loads(l) for l in jl.read_text().splitlines() if l.startswith('{"key": "') and l.endswith('}')]
    assert len(recs) == 5 and recs[-1]['status'] == 'passed'


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown language'): run('x', language='cobol')
    with pytest.raises(ValueError, match="job 1: needs a 'program'"): run_batch(['x', {'code': 'y'}], progress=False)


def need_toolchain(lang):
    "Skip a language whose toolchain is missing, but fail under CI=true, where the Makefile installs every one."
    ok, why = toolchains()[lang]
    if not ok: (pytest.fail if os.environ.get('CI') == 'true' else pytest.skip)(f"{lang}: {why}")


@pytest.mark.parametrize('lang', ['javascript', 'cpp', 'java', 'bash', 'perl', 'rust', 'go', 'php', 'ruby', 'lua'])
def test_other_languages(lang):
    need_toolchain(lang)
    good, bad = sandbox.HELLO[lang]
    assert run(good, language=lang, timeout=20).status == 'passed'
    assert run(bad, language=lang, timeout=20).status == 'failed'


def test_compiled_languages_early_exit_and_compile_error():
    if toolchains()['cpp'][0]:
        early = '#include <cstdlib>\n#include <cassert>\nint main() {\n    std::exit(0);\n    assert(false);\n}'
        assert run(early, language='cpp', timeout=10).status == 'failed'
        assert run('int main() { return undefined_name; }', language='cpp', timeout=10).status == 'compile_error'
        r = run('#include <vector>\nint main() { std::vector<long> v; while (true) v.resize(v.size() + 100000000); }',
                language='cpp', timeout=10, memory_mb=256)
        assert r.status == 'oom', r
    if toolchains()['java'][0]:
        early = 'class P {\n    public static void main(String[] args) {\n        System.exit(0);\n    }\n}'
        assert run(early, language='java', timeout=20).status == 'failed'
        assert run('class P { void f( }', language='java', timeout=20).status == 'compile_error'
    if toolchains()['javascript'][0]:
        assert run('process.exit(0);\nthrow new Error("x");', language='js', timeout=10).status == 'failed'
        assert run('let x = ;', language='js', timeout=10).status == 'compile_error'
        r = run('let a = []; while (true) a.push(new Array(1e6).fill(1));', language='js', timeout=20, memory_mb=256)
        assert r.status == 'oom', r


def test_fallback_isolation_in_a_subprocess():
    "Without namespaces (forced) the limits, the process group and the completion marker still hold."
    code = textwrap.dedent('''
        import os
        from stablecode.sandbox import run, isolation, isolation_report, SandboxRefused
        assert isolation() == 'rlimits', isolation()
        try: run('assert 1 == 1', timeout=5); raise SystemExit('ran without the opt-in')
        except SandboxRefused: pass
        os.environ['STABLECODE_ALLOW_WEAK_SANDBOX'] = '1'
        print(isolation_report())
        assert run('assert 1 == 1', timeout=5).passed
        assert run('assert 1 == 2', timeout=5).status == 'failed'
        assert run('while True: pass', timeout=1).status == 'timeout'
        assert run('import os; os._exit(0)', timeout=5).status == 'failed'
        assert run('x = bytearray(8 << 30)', timeout=5, memory_mb=256).status == 'oom'
        bomb = 'import os\\nwhile True:\\n    try: os.fork()\\n    except OSError: pass'
        assert run(bomb, timeout=2, nproc=32).status != 'passed'
        assert run('import subprocess; subprocess.Popen(["sleep", "987"]); import os; os._exit(0)', timeout=5).status == 'failed'
        print('ok')
    ''')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'STABLECODE_SANDBOX': 'rlimits'})
    assert r.returncode == 0 and r.stdout.strip().endswith('ok'), r.stderr[-2000:]
    assert 'rlimits only' in r.stdout


WARM_ATTACKS = {
    'infinite loop': ('while True:\n    pass', 'timeout'),
    'fork bomb': ('import os\nwhile True:\n    try: os.fork()\n    except OSError: pass', 'timeout'),
    'memory hog': ('a = []\nwhile True:\n    a.append(bytearray(10 ** 7))', 'oom'),
    'sys.exit(0)': ('import sys\nsys.exit(0)\nassert False', 'failed'),
    'os._exit(0)': ('import os\nos._exit(0)\nassert False', 'failed'),
    # the server is PID 1 of its own namespace: a program's SIGKILL does not reach it, and the program runs on
    'kill the parent': ('import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time; time.sleep(1)', 'passed'),
    'kill everything': ('import os, signal\nos.kill(-1, signal.SIGKILL)\nimport time; time.sleep(1)\nos._exit(0)', 'failed'),   # nothing to kill
    'background process': ('import subprocess, os\nsubprocess.Popen(["sleep", "987"], start_new_session=True)\n'
                           'if os.fork() == 0:\n    os.setsid()\n    import time; time.sleep(987)\nos._exit(0)', 'failed'),
    'print 1 GB': ("import sys\nb = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(b)", 'failed'),
    'read the server memory': ("import os\nopen(f'/proc/{os.getppid()}/mem', 'rb')", 'failed'),
    'write outside': ("open('/etc/sc_pwned', 'w').write('x')", 'failed'),
    'socket': ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)", 'failed'),
    'leave a file for the next program': ("open('/tmp/w_note', 'w').write('x'); open('left.txt', 'w').write('x')", 'passed'),
}


@need_ns
def test_warm_fork_server_attacks():
    "The same attacks through the batch runner's warm sandboxes; after each one, a clean program still passes."
    jobs, want = [], []
    probe = "import os\nassert not os.path.exists('left.txt') and not os.path.exists('/tmp/w_note'), os.listdir('.')\n" \
            "assert len([p for p in os.listdir('/proc') if p.isdigit()]) <= 4, os.listdir('/proc')"   # init, server x 2, probe
    for i, (name, (prog, status)) in enumerate(WARM_ATTACKS.items()):
        jobs += [{'program': prog, 'timeout': 2, 'memory_mb': 256}, {'program': probe + f'\n# {i}', 'timeout': 5}]
        want += [status, 'passed']
    res = run_batch(jobs, workers=1, progress=False)
    got = [r.status for r in res]
    assert got == want, [(n, r) for n, r, w in zip([x for k in WARM_ATTACKS for x in (k, 'probe')], res, want) if r.status != w]
    assert all(r.isolation.startswith('bwrap-forkserver') for r in res)
    assert not Path('/etc/sc_pwned').exists()
