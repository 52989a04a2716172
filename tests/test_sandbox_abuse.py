"""The abuse suite (issue 13): attacks written as the candidate solution of a Python task, run the way rewards are
computed (solution and tests in two processes, cold and warm). Every attack "passes" only if it succeeded, so each
must end as a failure within its limit, and leave no process and no file behind."""
import os, socket, tempfile, textwrap, threading, time
from pathlib import Path
import pytest
from procs import listening_port, procs
from stablecode import sandbox
from stablecode.sandbox import run, run_batch, isolation, tree_limits

CI = os.environ.get('CI') == 'true'
NS = isolation() == 'bwrap'
TESTS = 'def check(candidate):\n    assert candidate(2, 3) == 5\ncheck(add)\n'
ADD = '\ndef add(a, b):\n    return a + b\n'
ROOT = Path(__file__).resolve().parents[1]


def need(cond, why):
    "Skip where the machine lacks a feature, but fail under CI=true, where it must be there."
    if not cond: (pytest.fail if CI else pytest.skip)(f"{why}; active: {sandbox.isolation_report()}")


def _procs():
    "Our sandboxed processes: anything running the runner, a test program or a sleeper, or bwrap."
    return procs('_sc_runner', 'sleep 987', 'bwrap', 'prog.py')


def _leftovers():
    "Host-side files a run may create: working directories and cgroups."
    tmp = set(Path(tempfile.gettempdir()).glob('sc-run-*')) | set(Path(tempfile.gettempdir()).glob('sc-probe-*'))
    cg = sandbox._cache.get('cgroup')
    cgs = {p for d in cg[1].values() for p in Path(d).iterdir() if p.is_dir()} if cg else set()
    return tmp | cgs


@pytest.fixture(autouse=True)
def clean():
    sandbox.toolchains(); tree_limits()
    before_p, before_f = {p for p, _ in _procs()}, _leftovers()
    yield
    deadline = time.time() + 5
    while (left := [x for x in _procs() if x[0] not in before_p]) and time.time() < deadline: time.sleep(0.1)
    assert not left, f"processes left behind: {left}"
    assert _leftovers() - before_f == set(), f"files left behind: {_leftovers() - before_f}"


def attack(body: str) -> str:
    return textwrap.dedent(body).strip('\n') + '\n'


FILL = attack('''
    import os
    written = {}
    for d in ['/tmp', '/var/tmp', '/run', '/dev/shm', '/dev', '.', os.path.expanduser('~')]:
        n = 0
        try:
            for i in range(64):                  # 64 files of 8 MB: 512 MB per place if nothing stops it
                with open(os.path.join(d, f'fill{i}'), 'wb') as f: f.write(b'x' * (8 << 20)); n += 8
        except OSError: pass
        written[d] = n
    print(written)
    assert all(v >= 90 for v in written.values()), written        # "passes" only if every place took 90 MB
''') + ADD

ATTACKS = {
    'infinite loop': (attack('''
        def add(a, b):
            while True: pass
    '''), {'timeout'}),
    'fork bomb': (attack('''
        import os
        for _ in range(100000):
            try: os.fork()
            except OSError: pass
    ''') + ADD, {'timeout', 'failed', 'crashed', 'oom'}),
    'memory hog': (attack('''
        a = []
        while True: a.append(bytearray(10 ** 7))
    ''') + ADD, {'oom'}),
    'disk filler in every writable path': (FILL, {'failed', 'crashed'}),
    'write outside': (attack(f'''
        ok = []
        for t in ['/etc/sc_pwned', {str(ROOT / 'sc_pwned')!r}, '/sc_pwned', '/usr/sc_pwned', '/var/sc_pwned']:
            try: open(t, 'w').write('x'); ok.append(t)
            except OSError: pass
        assert ok, 'nothing outside was writable'
    ''') + ADD, {'failed'}),
    'marker forgery': (attack('''
        import gc, os, re, sys
        texts = [open(f).read() for f in os.listdir('.') if os.path.isfile(f)]
        texts += [o for o in gc.get_objects() if isinstance(o, str)]
        marks = {m for t in texts for m in re.findall(r'__SC_DONE_\\w+__', t)}
        print(*marks, flush=True)
        for fd in range(3, 64):                   # and a fake verdict on every descriptor it holds
            try: os.write(fd, b'{"status": "passed", "message": ""}\\n')
            except OSError: pass
        os._exit(0)
    ''') + ADD, {'failed'}),
    'daemonized child': (attack('''
        import os, subprocess, time
        subprocess.Popen(['sleep', '987'], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0: time.sleep(987)
            os._exit(0)
        time.sleep(0.2)
        os._exit(0)
    ''') + ADD, {'failed'}),
    '1 GB of output': (attack('''
        import sys
        def add(a, b):
            block = 'x' * (1 << 20)
            for _ in range(1024): sys.stdout.write(block)
            return a + b
    '''), {'failed', 'crashed'}),
    'kill -9 of the parent': (attack('''
        import os, signal
        os.kill(os.getppid(), signal.SIGKILL)
        try: os.kill(-1, signal.SIGKILL)
        except OSError: pass
    ''') + ADD, {'failed', 'crashed'}),
}
NEEDS_NS = {'disk filler in every writable path', 'write outside', 'daemonized child'}


@pytest.mark.parametrize('name', list(ATTACKS))
def test_attack_cold(name):
    if name in NEEDS_NS: need(NS, 'namespaces (bwrap) are needed to contain this attack')
    prog, ok = ATTACKS[name]
    r = run(prog, tests=TESTS, timeout=3, memory_mb=256, nproc=32)
    assert r.status in ok, r
    assert len(r.stdout) <= 1 << 20 and len(r.stderr) <= 1 << 20


def test_network_to_a_live_local_port():
    need(NS, 'a network namespace is needed to contain this attack')
    with listening_port() as (port, got):
        prog = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n" + ADD
        assert run(prog, tests=TESTS, timeout=5).status == 'failed'
        time.sleep(0.3)
    assert got == []


def test_memory_of_the_whole_tree():
    "Eight processes of 150 MB each stay under a 256 MB per-process limit; only a cgroup stops the tree."
    need(tree_limits() != 'rlimits', 'a writable cgroup (v2, or v1 memory + pids) is needed to bound the tree')
    prog = attack('''
        import os, time
        kids = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                b = bytearray(150 << 20)
                for i in range(0, len(b), 4096): b[i] = 1
                time.sleep(2); os._exit(0)
            kids.append(pid)
        assert all(os.waitpid(k, 0)[1] == 0 for k in kids), 'a child was killed'
    ''') + ADD
    r = run(prog, tests=TESTS, timeout=10, memory_mb=256)
    assert r.status in ('oom', 'failed'), r


def test_attacks_warm():
    "The same attacks through the batch runner's warm sandboxes; a clean solution still passes after each one."
    need(NS, 'the warm fork server needs namespaces')
    jobs, want = [], []
    for i, (name, (prog, ok)) in enumerate(ATTACKS.items()):
        jobs += [{'program': prog, 'tests': TESTS, 'timeout': 3, 'memory_mb': 256, 'nproc': 32},
                 {'program': ADD + f'# {i}\n', 'tests': TESTS, 'timeout': 5}]
        want += [ok, {'passed'}]
    res = run_batch(jobs, workers=1, progress=False)
    bad = [(j['program'][:40], r) for j, r, w in zip(jobs, res, want) if r.status not in w]
    assert not bad, bad
    assert all(r.isolation.startswith('bwrap-forkserver') for r in res)


def test_fresh_random_state_per_program():
    need(NS, 'the warm fork server needs namespaces')
    prog = 'import random\nprint(random.getrandbits(64))\n' + ADD
    res = run_batch([{'program': prog + f'# {i}', 'tests': TESTS} for i in range(4)], workers=1, progress=False)
    assert all(r.passed for r in res), res
    assert len({r.stdout for r in res}) == 4, [r.stdout for r in res]
