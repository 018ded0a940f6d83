# faye on the official Airflow image: the package (and its `production` extra: the Celery and
# PostgreSQL providers) installed once at build time, never at container start
# (`_PIP_ADDITIONAL_REQUIREMENTS` reinstalls on every start and is meant for quick trials only).
#
#   docker build -t faye-airflow:3.3.2 .          # or: docker compose build
#
# Airflow pins itself: `apache-airflow==${AIRFLOW_VERSION}` keeps pip from moving the image's Airflow
# (the official "extending the image" recipe). AIRFLOW_IMAGE may point at a mirror of the same tag.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

COPY --chown=airflow:0 pyproject.toml README.md /opt/faye/
COPY --chown=airflow:0 faye_plugin /opt/faye/faye_plugin
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/faye[production]"

# the scheduler and Celery workers import faye's heavy libraries once, before forking tasks
COPY --chown=airflow:0 examples/airflow_local_settings.py /opt/airflow/config/airflow_local_settings.py

# faye's DAG files (docker-compose.yaml mounts ./dags over them, as the official compose does)
COPY --chown=airflow:0 dags /opt/airflow/dags
