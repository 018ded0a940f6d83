# Airflow imports `airflow_local_settings` from $AIRFLOW_HOME/config at start (the Dockerfile copies
# this file there; `faye stack up` writes the same lines for the local stack). The scheduler and the
# Celery workers then import faye's heavy libraries once, before they fork task processes, instead of
# every faye step importing them again (faye_plugin/preload.py; FAYE_PRELOAD=0 turns it off).
# Names without a leading underscore here become Airflow settings or policies: keep them private.
from faye_plugin.preload import install as _faye_preload

_faye_preload()
