"""What a Celery worker of the local stack tells Airflow about itself.

Several workers run on one machine, so the machine's name cannot tell them apart: each worker's
environment names it (``FAYE_WORKER_HOSTNAME``), and ``[core] hostname_callable`` points here, so
the task instances it runs record that name as their ``hostname``, as they would on separate machines.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """Return this worker's name (``FAYE_WORKER_HOSTNAME``), else the machine's FQDN (Airflow's default)."""
    return os.environ.get("FAYE_WORKER_HOSTNAME") or socket.getfqdn()
