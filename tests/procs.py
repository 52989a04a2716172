"""Shared by the sandbox tests: which processes are still alive (nothing may outlive a sandboxed run)."""
import contextlib, os, socket, threading
from pathlib import Path


def procs(*needles) -> list[tuple[int, str]]:
    "(pid, command line) of the processes (not this one) whose command line contains one of `needles`."
    out = []
    for p in Path('/proc').iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid(): continue
        try: cmd = (p/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError: continue
        if any(n in cmd for n in needles): out.append((int(p.name), cmd[:120]))
    return out


@contextlib.contextmanager
def listening_port():
    "A TCP server on a free loopback port for the duration of the block; yields (port, list of bytes it received)."
    srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(5); srv.settimeout(0.2)
    got, stop = [], threading.Event()
    def accept():
        while not stop.is_set():
            try: c, _ = srv.accept(); got.append(c.recv(100)); c.close()
            except OSError: pass
    th = threading.Thread(target=accept, daemon=True); th.start()
    try: yield srv.getsockname()[1], got
    finally: stop.set(); th.join(); srv.close()
