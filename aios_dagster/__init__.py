"""aios_dagster: an AI operating system for enterprise automation, built on Dagster."""
