"""What faye adds to Airflow's api-server (registered by ``faye_plugin.plugin``)."""
