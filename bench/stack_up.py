"""How long `faye stack up` / `down` take, and what the running stack costs (PSS, idle CPU).

    FAYE_HOME=/tmp/faye-bench FAYE_PORT_BASE=29180 uv run python bench/stack_up.py [--keep-state]

It runs, in that state folder (which it deletes first unless --keep-state): a cold `up` (nothing in
the state folder), a second `up` (everything running), a `down`, a warm `up` (state kept), then
measures PSS and CPU per part over 30 s of idling, and finally a `down`. Numbers are wall-clock and
depend on the machine's load: print `uptime` with them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from faye_plugin.stack.config import StackConfig
from faye_plugin.stack.processes import session_members


def _faye(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "faye_plugin.cli.main", *args], check=True, capture_output=True)
    return time.monotonic() - t0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def idle_cost(cfg: StackConfig, seconds: float = 30.0) -> None:
    groups = {}
    for pidfile in sorted(cfg.run_dir.glob("*.pid")):
        groups[pidfile.stem] = session_members(int(json.loads(pidfile.read_text())["pid"]))
    before = {name: sum(_cpu_ticks(p) for p in pids) for name, pids in groups.items()}
    time.sleep(seconds)
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for name, pids in groups.items():
        pss = sum(_pss_kb(p) for p in pids)
        total += pss
        cpu = (sum(_cpu_ticks(p) for p in pids) - before[name]) / tick / seconds * 100
        print(f"  {name:24s} {len(pids):2d} procs  PSS {pss / 1024:7.1f} MB  idle CPU {cpu:5.1f} % of a core")
    print(f"  total PSS {total / 1024:.0f} MB")


def main() -> None:
    cfg = StackConfig.from_env()
    if "--keep-state" not in sys.argv and cfg.home.exists():
        _faye("stack", "down")
        shutil.rmtree(cfg.home)
    print(f"load: {os.getloadavg()}")
    print(f"cold up          {_faye('stack', 'up'):6.1f} s")
    print(f"second up        {_faye('stack', 'up'):6.1f} s")
    print(f"down             {_faye('stack', 'down'):6.1f} s")
    print(f"warm up          {_faye('stack', 'up'):6.1f} s")
    idle_cost(cfg)
    print(f"down             {_faye('stack', 'down'):6.1f} s")
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
