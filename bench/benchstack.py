"""What the benches share: a stack of their own whose DAG folder is ``dags/`` plus the engine's yardsticks.

The yardsticks measure Airflow itself on the same stack, so faye's numbers can be given as ratios
(these machines are noisy: absolute numbers move with the load):

* ``faye_bench_one``: one EmptyOperator, the engine's floor (trigger -> success);
* ``faye_bench_chain``: ten EmptyOperators in a chain, the engine's cost per dependency hop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

ONE_TASK_DAG = '''"""One EmptyOperator: the engine's floor (bench/benchstack.py)."""

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="faye_bench_one", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    EmptyOperator(task_id="one")
'''

CHAIN_DAG = '''"""Ten EmptyOperators in a chain: the cost per hop (bench/benchstack.py)."""

from datetime import datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, chain

with DAG(dag_id="faye_bench_chain", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    chain(*(EmptyOperator(task_id=f"hop_{i}") for i in range(10)))
'''


def faye(env: dict[str, str], *args: str) -> str:
    """Run the ``faye`` CLI with ``env``; its stdout, or SystemExit naming the command and its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "faye_plugin.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"faye {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def prepare(env: dict[str, str]) -> None:
    """Make the stack's DAG folder (``FAYE_DAGS_FOLDER``): a copy of ``dags/`` plus the yardsticks."""
    dags = Path(env["FAYE_DAGS_FOLDER"])
    dags.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "dags").glob("*.py"):
        shutil.copy(source, dags / source.name)
    (dags / "faye_bench_one.py").write_text(ONE_TASK_DAG)
    (dags / "faye_bench_chain.py").write_text(CHAIN_DAG)
    Path(env["FAYE_HOME"]).mkdir(parents=True, exist_ok=True)


def add_service(catalogue: Path, name: str, slots: list[str]) -> None:
    """Add ``name`` to the stack's catalogue: the sample service ``hello`` under another Cloud Run name."""
    data = yaml.safe_load(catalogue.read_text())
    service = json.loads(json.dumps(data["services"]["hello"]))
    service["cloud_run"]["service"] = name
    service["slots"] = slots
    data["services"][name] = service
    catalogue.write_text(yaml.safe_dump(data, sort_keys=False))
