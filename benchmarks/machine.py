"""What every benchmark records about the machine it ran on (shared by benchmarks/bench_*.py)."""
import importlib, json, os, platform, subprocess, sys
from pathlib import Path

def machine(*packages: str) -> dict:
    "CPU model, cores, load, Python and torch versions (plus GPU name when present), and the versions of `packages`."
    import torch
    try: cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), None)
    except OSError: cpu = None                                   # no /proc (macOS)
    cpu = cpu or platform.processor()
    try: load = os.getloadavg()[0]
    except OSError: load = None
    d = dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
             torch_threads=torch.get_num_threads(), load_average_1min_at_start=load)
    if torch.cuda.is_available(): d['gpu'] = torch.cuda.get_device_name()
    for p in packages: d[p] = importlib.import_module(p).__version__
    return d

def machine_text(m: dict) -> str:
    "The machine of `machine()` in one sentence, for a result's Markdown."
    return (f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}, "
            f"load average at start {m['load_average_1min_at_start']}.")

def alternate(n_rounds: int, sides: dict) -> list[dict]:
    """Run every side once per round, the order reversed every other round so that load from other processes falls on
    all of them. `sides`: name -> zero-argument callable returning a tuple whose first item is seconds.
    Returns one {name: result} per round."""
    out = []
    for r in range(n_rounds):
        got = {}
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            got[name] = sides[name]()
            print(f"round {r}: {name} {got[name][0]:.1f}s", flush=True)
        out.append(got)
    return out

def md_table(header: list[str], rows: list[list]) -> list[str]:
    "A Markdown table's lines."
    return ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + ['| ' + ' | '.join(map(str, r)) + ' |' for r in rows]

def fresh_side(script: str, side: str, payload) -> dict:
    """Run one side of a benchmark in a fresh interpreter that imports only what that side needs: `script --side
    SIDE` reads `payload` (JSON) on stdin, times its own work and prints a JSON object ({'seconds': ..., ...}) last."""
    r = subprocess.run([sys.executable, script, '--side', side], input=json.dumps(payload), capture_output=True,
                       text=True)
    if r.returncode: raise RuntimeError(f"side {side!r} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def side_main(sides: dict) -> bool:
    "In a side's process (`--side NAME` in argv): run `sides[NAME](payload)` and print its JSON; False elsewhere."
    if '--side' not in sys.argv: return False
    print(json.dumps(sides[sys.argv[sys.argv.index('--side') + 1]](json.loads(sys.stdin.read()))))
    return True

def save(name: str, info: dict, md: list[str]):
    "Write benchmarks/results/NAME.json (the figures) and NAME.md (the table), and print the table."
    out = Path(__file__).resolve().parent / 'results'; out.mkdir(parents=True, exist_ok=True)
    (out / f'{name}.json').write_text(json.dumps(info, indent=1))
    (out / f'{name}.md').write_text('\n'.join(md))
    print('\n'.join(md))
