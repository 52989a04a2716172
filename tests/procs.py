"""Shared by the sandbox tests: which processes are still alive (nothing may outlive a sandboxed run)."""
import os
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
