"""One typed place that says where things live and which profile is active.

Settings are read from the environment when `Settings.from_env()` is called (inside
`@dg.definitions`, a CLI command or a test), never at import time, so importing the package has
no side effects and tests can point everything at a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

DEFAULT_START_DATE = date(2026, 11, 9)
"""First day of the reference data: the generator and the daily partitions agree on it."""


@dataclass(frozen=True)
class Settings:
    """Where the embedded profile keeps its data, and what production overrides.

    Every path is absolute so that subprocesses (dbt, Triton) started from another working
    directory see the same files.
    """

    data_dir: Path
    triton_grpc_url: str = "127.0.0.1:8001"
    pii_key: str | None = None
    warehouse: str = "duckdb"  # duckdb (embedded) | postgres (production)
    pg_host: str = "127.0.0.1"  # the Postgres warehouse; its password only from AIOS_PG_PASSWORD
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_database: str = "aios"
    pg_password_set: bool = False
    start_date: date = DEFAULT_START_DATE
    drift_ui_url: str = "http://127.0.0.1:8010"  # where `aios-dagster drift-ui` serves
    k8s_job_tags: str | None = None  # per-job pod sizes (deploy/k8s_job_tags.yaml) on Kubernetes
    triton_ready_timeout_s: float = 30.0
    triton_retry_total_s: float = 60.0  # how long a call rides through a Triton restart
    triton_metrics_url: str | None = None
    profile: str = "embedded"
    triton_shared_memory_mode: str = "auto"  # auto | true | false (see _shared_memory)
    triton_replica_urls: tuple[str, ...] = ()  # extra gRPC replicas: load spread, failover
    mlflow_tracking_uri: str | None = None  # production: postgresql+psycopg://...
    mlflow_artifact_location: str | None = None  # production: s3://... (object storage)
    model_repository_url: str | None = None  # production: s3://... the Triton fleet loads
    executor: str = "multiprocess"  # multiprocess (forkserver) | spawn | in_process (lib/executors)
    online_store_url: str | None = None  # redis://... in production; SQLite under data/ embedded
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        # Never the current directory: a command run from elsewhere must not scatter ``./data``.
        project = env.get("AIOS_PROJECT_DIR") or _PACKAGE_PARENT
        data_dir = Path(env.get("AIOS_DATA_DIR") or Path(project) / "data").expanduser().resolve()
        start = env.get("AIOS_START_DATE")
        return cls(
            data_dir=data_dir,
            triton_grpc_url=env.get("AIOS_TRITON_GRPC_URL", "127.0.0.1:8001"),
            pii_key=env.get("AIOS_PII_KEY"),
            warehouse=env.get("AIOS_WAREHOUSE", "duckdb"),
            pg_host=env.get("AIOS_PG_HOST", "127.0.0.1"),
            pg_port=int(env.get("AIOS_PG_PORT", "5432")),
            pg_user=env.get("AIOS_PG_USER", "postgres"),
            pg_database=env.get("AIOS_PG_DATABASE", "aios"),
            pg_password_set=bool(env.get("AIOS_PG_PASSWORD")),
            start_date=date.fromisoformat(start) if start else DEFAULT_START_DATE,
            drift_ui_url=env.get("AIOS_DRIFT_UI_URL", "http://127.0.0.1:8010"),
            k8s_job_tags=env.get("AIOS_K8S_JOB_TAGS") or None,
            triton_ready_timeout_s=float(env.get("AIOS_TRITON_READY_TIMEOUT_S", "30")),
            triton_retry_total_s=float(env.get("AIOS_TRITON_RETRY_TOTAL_S", "60")),
            triton_metrics_url=env.get("AIOS_TRITON_METRICS_URL"),
            profile=env.get("AIOS_PROFILE", "embedded"),
            triton_shared_memory_mode=env.get("AIOS_TRITON_SHARED_MEMORY", "auto"),
            triton_replica_urls=tuple(
                u.strip() for u in env.get("AIOS_TRITON_GRPC_URLS", "").split(",") if u.strip()
            ),
            mlflow_tracking_uri=env.get("AIOS_MLFLOW_TRACKING_URI") or None,
            mlflow_artifact_location=env.get("AIOS_MLFLOW_ARTIFACT_LOCATION") or None,
            model_repository_url=env.get("AIOS_MODEL_REPOSITORY_URL") or None,
            executor=env.get("AIOS_EXECUTOR", "multiprocess"),
            online_store_url=env.get("AIOS_ONLINE_STORE_URL") or None,
            extra={
                key: env[var] for key, var in (("project_dir", "AIOS_PROJECT_DIR"),) if var in env
            },
        )

    @property
    def triton_shared_memory(self) -> bool:
        """Whether scoring passes tensors through /dev/shm (decided for the current URL)."""
        urls = (self.triton_grpc_url, *self.triton_replica_urls)
        return all(_shared_memory(self.triton_shared_memory_mode, url) for url in urls)

    @property
    def sources_dir(self) -> Path:
        """Where the (generated) source systems live: mailbox, CRM export, SQL database."""
        return self.data_dir / "sources"

    @property
    def mailbox_dir(self) -> Path:
        return self.sources_dir / "mailbox" / "inbox"

    @property
    def crm_csv(self) -> Path:
        return self.sources_dir / "crm" / "customers.csv"

    @property
    def transactions_db(self) -> Path:
        return self.sources_dir / "bank.sqlite"

    @property
    def labels_csv(self) -> Path:
        return self.sources_dir / "labels" / "routing_labels.csv"

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def live_mailbox_dir(self) -> Path:
        """Where the embedded real-time handler watches for mail (no broker needed)."""
        return self.sources_dir / "mailbox" / "live"

    @property
    def online_store(self) -> str:
        """The online store's URL: ``AIOS_ONLINE_STORE_URL``, else a SQLite file of the data."""
        return self.online_store_url or f"sqlite:///{self.data_dir / 'state' / 'online.sqlite'}"

    @property
    def cursors_dir(self) -> Path:
        """Connector cursors: where each source was read up to (see connectors.cursors)."""
        return self.data_dir / "state" / "cursors"

    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse" / "aios.duckdb"

    @property
    def model_repository(self) -> Path:
        return self.data_dir / "model_repository"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def drift_workspace_dir(self) -> Path:
        """The Evidently workspace: a project per model, its drift and quality reports."""
        return self.reports_dir / "evidently_workspace"

    @property
    def triton_work_dir(self) -> Path:
        return self.data_dir / "triton"

    @property
    def mlflow_dir(self) -> Path:
        """The embedded model registry: MLflow's SQLite store and artifact folder."""
        return self.data_dir / "mlflow"

    @property
    def registry_tracking_uri(self) -> str:
        """MLflow backend store (and the audit tables): AIOS_MLFLOW_TRACKING_URI, else the
        embedded SQLite file."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def registry_artifact_location(self) -> str:
        return self.mlflow_artifact_location or str(self.mlflow_dir / "artifacts")

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"

    @property
    def project_dir(self) -> Path:
        """The checkout (or image folder) holding ``expectations/`` and ``dbt_project/``."""
        return Path(self.extra.get("project_dir", _PACKAGE_PARENT))

    @property
    def connectors_dir(self) -> Path:
        """Where the connector Components are declared (``<name>/defs.yaml`` each)."""
        return Path(_PACKAGE_DIR) / "defs" / "ingest"

    @property
    def handlers_dir(self) -> Path:
        """Where the real-time handler Components are declared (``<name>/defs.yaml`` each)."""
        return Path(_PACKAGE_DIR) / "defs" / "realtime"

    @property
    def models_dir(self) -> Path:
        """Where the model Components are declared (``<name>/defs.yaml`` each)."""
        return Path(_PACKAGE_DIR) / "defs" / "models"

    @property
    def expectations_dir(self) -> Path:
        return self.project_dir / "expectations"

    @property
    def dbt_project_dir(self) -> Path:
        return self.project_dir / "dbt_project"


_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_ACTIVE: ContextVar[Settings | None] = ContextVar("aios_settings", default=None)


def current_settings() -> Settings:
    """The settings the definitions are being built with: those given to ``active_settings``
    (a test or ``build_definitions`` with explicit settings), else the environment's."""
    return _ACTIVE.get() or Settings.from_env()


@contextmanager
def active_settings(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what Components see while the defs folder loads."""
    token = _ACTIVE.set(settings)
    try:
        yield settings
    finally:
        _ACTIVE.reset(token)


_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _shared_memory(mode: str, grpc_url: str) -> bool:
    """Tensors through /dev/shm only where the server shares this host's memory.

    ``auto`` (default) turns it on for a loopback server (the embedded Triton: 1.3-1.8x rows/s,
    bench/inference_batch.py) and off for anything remote, such as the Triton Service on GPU nodes.
    """
    mode = mode.strip().lower()
    if mode in ("1", "true", "on", "yes"):
        return True
    if mode in ("0", "false", "off", "no"):
        return False
    if mode != "auto":
        raise ValueError(f"AIOS_TRITON_SHARED_MEMORY must be auto, true or false, not {mode!r}")
    return grpc_url.rsplit(":", 1)[0] in _LOOPBACK
