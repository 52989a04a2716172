"""The abuse suite (issue 13): attacks written as the candidate solution of a Python task, run the way rewards are
computed (solution and tests in two processes, cold and warm). Every attack "passes" only if it succeeded, so each
must end as a failure within its limit, and leave no process and no file behind."""
import json, os, socket, tempfile, textwrap, threading, time
from pathlib import Path
import pytest
from procs import listening_port, procs
from stablecode import sandbox
from stablecode.sandbox import run, run_batch, isolation, tree_limits

CI = os.environ.get('CI') == 'true'
NS = isolation() == 'bwrap'
TESTS = 'def check(candidate):\n    assert candidate(2, 3) == 5\ncheck(add)\n'
ADD = '\ndef add(a, b):\n    return a + b\n'
SUB = '\ndef add(a, b):\n    return a - b\n'       # a wrong answer: the attacks that end with it pass only by forgery
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

def forge(payload: bytes) -> str:
    """An attack's first part: write `payload` into every pipe of every process it can see, try ptrace, a pidfd and a
    signal on each, and print what worked as JSON (`others`: the pids it saw, for the part that follows)."""
    return attack('''
        import ctypes, json, os, signal, sys
        libc = ctypes.CDLL(None, use_errno=True)
        me = int(os.readlink('/proc/self'))          # our pid as /proc numbers it (we may live in our own namespace)
        others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != me]
        got = {'pipes': [], 'ptrace': [], 'pidfd': [], 'signal': [], 'ppid': os.getppid()}
        for pid in others:
            try: fds = os.listdir(f'/proc/{pid}/fd')
            except OSError: continue
            for fd in fds:
                try:
                    if not os.readlink(f'/proc/{pid}/fd/{fd}').startswith('pipe:'): continue
                    w = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY | os.O_NONBLOCK)
                    os.write(w, PAYLOAD); got['pipes'].append(f'{pid}/{fd}')
                except OSError: pass
        for pid in others:
            if libc.ptrace(16, pid, 0, 0) == 0: got['ptrace'].append(pid)      # PTRACE_ATTACH
            try:
                pfd = os.open(f'/proc/{pid}', os.O_RDONLY | os.O_DIRECTORY)   # a pidfd: pidfd_send_signal(signal 0)
                if libc.syscall(424, pfd, 0, 0, 0) == 0: got['pidfd'].append(pid)
            except OSError: pass
            try:
                if pid != os.getpid(): os.kill(pid, 0); got['signal'].append(pid)
            except OSError: pass
        print(json.dumps(got), flush=True)
    ''').replace('PAYLOAD', repr(payload))


VERDICT = b'{"status": "passed", "message": "", "test_times": []}'                    # the test process's verdict
ANSWER = (b'{"id": "0", "rc": 0, "stdout": "", "stderr": "", "timed_out": false, "truncated": false, '  # the warm
          b'"verdict": {"status": "passed", "message": ""}}\n')                          # server's answer line
KILL_ALL = attack('''
    for pid in others:
        try: os.kill(pid, signal.SIGKILL)
        except OSError: pass
    for target in (0, -1):
        try: os.kill(target, signal.SIGKILL)
        except OSError: pass
''')

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
    ''') + SUB, {'failed', 'crashed'}),
    'forged verdict through /proc, then kill everything': (forge(VERDICT) + KILL_ALL + SUB, {'failed', 'crashed'}),
    'forged answer line through /proc, then kill everything': (forge(ANSWER) + KILL_ALL + SUB, {'failed', 'crashed'}),
    'forged verdict, then exit': (forge(VERDICT) + 'os._exit(0)\n' + SUB, {'failed', 'crashed'}),
    'forged verdict, wrong answer': (forge(VERDICT) + SUB, {'failed'}),
}
NEEDS_NS = {'disk filler in every writable path', 'write outside', 'daemonized child'}


@pytest.mark.parametrize('name', list(ATTACKS))
@pytest.mark.parametrize('how', ['run', 'batch'])
def test_attack_cold(name, how):
    if name in NEEDS_NS: need(NS, 'namespaces (bwrap) are needed to contain this attack')
    prog, ok = ATTACKS[name]
    job = dict(program=prog, tests=TESTS, timeout=3, memory_mb=256, nproc=32)
    r = run(**job) if how == 'run' else run_batch([job], warm=False, progress=False)[0]
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


@pytest.mark.parametrize('trusted', [False, True])
def test_attacks_warm(trusted):
    """The same attacks through the batch runner's warm sandboxes, the tests in a fresh test process each time or (the
    benchmark's own tests) in the warm server itself; a clean solution still passes after each one."""
    need(NS, 'the warm fork server needs namespaces')
    jobs, want = [], []
    for i, (name, (prog, ok)) in enumerate(ATTACKS.items()):
        jobs += [{'program': prog, 'tests': TESTS, 'timeout': 3, 'memory_mb': 256, 'nproc': 32, 'trusted_tests': trusted},
                 {'program': ADD + f'# {i}\n', 'tests': TESTS, 'timeout': 5, 'trusted_tests': trusted}]
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


@pytest.mark.parametrize('how', ['cold', 'warm', 'warm, trusted tests'])
def test_the_test_process_is_out_of_reach(how):
    """A correct solution that tries every way to the test process: no pipe but its own, no ptrace, no pidfd, no signal
    reaches anything outside the candidate; its parent is invisible (getppid() == 0); and it still passes."""
    need(NS, 'namespaces (bwrap) are needed for the confined candidate')
    job = dict(program=forge(VERDICT) + ADD, tests=TESTS, timeout=5, trusted_tests=how.endswith('trusted tests'))
    r = run_batch([job], warm=how != 'cold', progress=False)[0]
    assert r.status == 'passed', r
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {'pipes': [], 'ptrace': [], 'pidfd': [], 'signal': [], 'ppid': 0}, got


def test_a_hostile_sample_does_not_end_the_batch():
    """Programs that flood every pipe they can reach, kill everything and send garbage, mixed with honest jobs: each
    hostile one gets its own failure, every honest one its true verdict, and no exception leaves run_batch."""
    need(NS, 'the warm fork server needs namespaces')
    flood = forge(ANSWER) + KILL_ALL
    jobs, want = [], []
    for i in range(3):
        jobs += [{'program': flood + f'# {i}'}, {'program': flood + SUB + f'# {i}', 'tests': TESTS, 'trusted_tests': i % 2 == 0},
                 {'program': 'x = "\\0"\nexec(x)\n' + f'# {i}'},
                 {'program': ADD + f'# {i}', 'tests': TESTS, 'trusted_tests': i % 2 == 1}, {'program': f'assert {i} + 1 == {i + 1}'},
                 {'program': SUB + f'# {i}', 'tests': TESTS}]
        want += [{'failed', 'crashed'}, {'failed', 'crashed'}, {'failed'}, {'passed'}, {'passed'}, {'failed'}]
    res = run_batch(jobs, workers=2, progress=False)
    bad = [(j['program'][-60:], r) for j, r, w in zip(jobs, res, want) if r.status not in w]
    assert not bad, bad


def test_a_harness_error_is_one_jobs_outcome(monkeypatch):
    "Whatever breaks inside the harness for one job becomes that job's `crashed` result, not the batch's exception."
    real = sandbox.run_warm
    def flaky(srv, program, *a, **kw):
        if 'boom' in program: raise KeyError('rc')
        return real(srv, program, *a, **kw)
    monkeypatch.setattr(sandbox, 'run_warm', flaky)
    res = run_batch(['assert True', '# boom', 'assert 1 == 2'], workers=1, progress=False)
    assert [r.status for r in res] == ['passed', 'crashed', 'failed'], res
    assert 'sandbox harness error: KeyError' in res[1].message
