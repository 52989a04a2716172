"""What every benchmark records about the machine it ran on (shared by benchmarks/bench_*.py)."""
import importlib, os, platform

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
