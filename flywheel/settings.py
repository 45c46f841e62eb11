"""Flywheel settings.

Every value comes from the environment through one ``environ.Env``. Development has safe
defaults (SQLite, the ORM broker, the offline ``local`` fine-tuning provider); with ``DEBUG``
off the project refuses to start without what production needs.
"""

import datetime
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin and other generic classes be subscripted at run time, as the type stubs expect.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG: bool = env.bool("DEBUG", default=True)

if DEBUG:
    SECRET_KEY: str = env.str("SECRET_KEY", default="dev-only-insecure-key-never-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "flywheel",
    "registry",
    "outcomes",
    "experiments",
    "training",
    "simulator",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static assets (the admin's, Swagger UI's, the charts') are served by Flywheel itself, with no
    # CDN and no separate web server needed; run collectstatic once per deploy.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "flywheel.http_errors.APIErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers 429 to a locked-out login
]

# --- Brute force: failed logins per username and client address (django-axes) ---------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT: int = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Logins are counted per client address by the same rule as refused API keys (TRUSTED_PROXY_COUNT).
AXES_CLIENT_IP_CALLABLE = "flywheel.auth.login_client_address"

# --- API keys and documentation ----------------------------------------------------------------
# The client's address is what the first of this many trusted proxies saw (X-Forwarded-For).
TRUSTED_PROXY_COUNT: int = env.int("TRUSTED_PROXY_COUNT", default=0)
# After this many refused API keys from one address within a window, its key requests answer 429
# until the window ends (counted in the default cache; 0 turns the limit off).
API_KEY_FAILURE_LIMIT: int = env.int("API_KEY_FAILURE_LIMIT", default=20)
API_KEY_FAILURE_WINDOW: int = env.int("API_KEY_FAILURE_WINDOW", default=300)
# /api/schema/ and /api/docs/ are open to anyone, or need an API key or a staff session.
API_DOCS_PUBLIC: bool = env.bool("API_DOCS_PUBLIC", default=DEBUG)

ROOT_URLCONF = "flywheel.urls"
WSGI_APPLICATION = "flywheel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'flywheel.sqlite3'}"),
}
# Connections are held between requests (opening one costs more than most requests) and checked
# before reuse, so a restarted database costs one failed check, not a failed request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=True))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the development server and the django-q2 cluster work side by side; IMMEDIATE
    # transactions make concurrent writers queue for the lock instead of failing mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
        }
    )
# Web nodes: a statement running longer than this (milliseconds) is cancelled, so a runaway query
# answers a JSON 503 before the server's own timeout kills the worker. 0 (the default) sets none;
# workers, whose exports run long, leave it unset.
DATABASE_STATEMENT_TIMEOUT: int = env.int("DATABASE_STATEMENT_TIMEOUT", default=0)
if DATABASE_STATEMENT_TIMEOUT and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT}"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://flywheel")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates in the admin read one way (flywheel.formatting): 2026-12-05 16:35.
FORMAT_MODULE_PATH = ["flywheel.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# In development WhiteNoise reads the apps' static folders directly; production serves what
# collectstatic gathered in STATIC_ROOT.
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(BASE_DIR / "media"))
MEDIA_URL = "media/"

# Production hardening: on whenever DEBUG is off, each switchable for a proxy that terminates TLS.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Background work (django-q2) -----------------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
Q_CLUSTER: dict[str, Any] = {
    "name": "flywheel",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=720),
    "max_attempts": 3,
    "catch_up": False,
    "sync": env.bool("Q_SYNC", default=False),
    "poll": 1,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "flywheel.auth.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["flywheel.auth.IsOrganizationMember"],
    "DEFAULT_PARSER_CLASSES": ["flywheel.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "flywheel.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["flywheel.auth.APIKeyRateThrottle"],
    # Per API key (or staff user), a fixed-window counter in the default cache: per process unless
    # CACHE_URL names a shared cache.
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_RATE_LIMIT", default="6000/min")},
    "UNAUTHENTICATED_USER": None,
}
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
SPECTACULAR_SETTINGS = {
    "TITLE": "Flywheel API",
    "DESCRIPTION": (
        "Outcomes in, better models out. Authenticate with an organization API key "
        "(`Authorization: Api-Key <key>`) or a staff session. Every 4xx answer is "
        '`{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from drf-spectacular-sidecar's files, served here: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "outcomes.api.batch_limits_hook"],
    "ENUM_NAME_OVERRIDES": {
        "ModelStatusEnum": "registry.models.RegisteredModel.Status",
        "ABTestGroupEnum": "registry.models.RegisteredModel.ABTestGroup",
    },
}
# Bodies above this size are refused with 413 before they are read (flywheel.parsers.BoundedJSONParser).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=5 * 1024 * 1024)

# --- Outcomes and training ---------------------------------------------------------------------
QUALITY_WEIGHTS: dict[str, float] = {
    "delivered": 0.1,
    "opened": 0.1,
    "clicked": 0.15,
    "replied": 0.2,
    "positive_reply": 0.2,
    "meeting_booked": 0.3,
    "meeting_completed": 0.4,
    "deal_closed": 0.5,
    "high_value_deal": 0.2,
    "icp_match": 0.1,
}
POSITIVE_REPLY_SENTIMENT = 0.5
HIGH_VALUE_DEAL = 50_000
OUTCOME_MATURATION_DAYS: int = env.int("OUTCOME_MATURATION_DAYS", default=14)
TRAINING_SYSTEM_PROMPT: str = env.str(
    "TRAINING_SYSTEM_PROMPT",
    default=(
        "You are an expert B2B sales copywriter. You write concise, personalised outreach "
        "messages that earn replies, meetings and closed deals."
    ),
)
TRAINING_MIN_EXAMPLES: int = env.int("TRAINING_MIN_EXAMPLES", default=50)
# Seconds between polls of a running job: each provider declares its own (local 2, openweights 10,
# openai 60); TRAINING_POLL_INTERVALS overrides it per provider ("local=1,openai=30"), and
# TRAINING_POLL_INTERVAL serves a provider that declares none.
TRAINING_POLL_INTERVAL: int = env.int("TRAINING_POLL_INTERVAL", default=60)
TRAINING_POLL_INTERVALS: dict[str, float] = {
    name: float(seconds) for name, seconds in env.dict("TRAINING_POLL_INTERVALS", default={}).items()
}
TRAINING_MAX_WAIT: int = env.int("TRAINING_MAX_WAIT", default=86400)
# A worker's claim on a step lives this long unless its heartbeat renews it (a quarter of it apart).
TRAINING_STEP_LEASE: int = env.int("TRAINING_STEP_LEASE", default=60)
# Waits before retrying an upload or a job creation the provider refused for now (429, 5xx, timeout).
TRAINING_RETRY_DELAYS: tuple[int, ...] = tuple(
    env.list("TRAINING_RETRY_DELAYS", cast=int, default=[15, 30, 60, 120, 240, 240, 240])
)
# GET /training/status caches the provider's answer: briefly while the job runs, longer once it ended.
TRAINING_JOB_CACHE_SECONDS: int = env.int("TRAINING_JOB_CACHE_SECONDS", default=10)
TRAINING_ENDED_JOB_CACHE_SECONDS: int = env.int("TRAINING_ENDED_JOB_CACHE_SECONDS", default=3600)
TRAINING_BASE_MODEL: str = env.str("TRAINING_BASE_MODEL", default="gpt-4o-2024-08-06")
TRAINING_DATA_DIR = env.path("TRAINING_DATA_DIR", default=str(Path(str(MEDIA_ROOT)) / "training_data"))
# Where datasets are kept for every worker to upload: a key of STORAGES (shared storage in production).
TRAINING_STORAGE: str = env.str("TRAINING_STORAGE", default="default")
# USD per 1M trained tokens, by base model (the seed's $25 for gpt-4o).
TRAINING_PRICES_PER_MILLION: dict[str, float] = {
    "gpt-4o-2024-08-06": 25.0,
    "gpt-4o": 25.0,
    "gpt-4o-mini-2024-07-18": 3.0,
    "gpt-4.1-2025-04-14": 25.0,
    "gpt-4.1-mini-2025-04-14": 5.0,
}
TRAINING_SCHEDULE_GLOBAL: bool = env.bool("TRAINING_SCHEDULE_GLOBAL", default=True)
TRAINING_SCHEDULE_ORGANIZATIONS: list[str] = env.list("TRAINING_SCHEDULE_ORGANIZATIONS", default=[])

FINE_TUNING_PROVIDER: str = env.str("FINE_TUNING_PROVIDER", default="local")
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="")
OPENAI_WEBHOOK_SECRET: str = env.str("OPENAI_WEBHOOK_SECRET", default="")
OPENAI_MAX_RETRIES: int = env.int("OPENAI_MAX_RETRIES", default=3)
OPENAI_TIMEOUT: float = env.float("OPENAI_TIMEOUT", default=60.0)
# Refuse to fine-tune a base model that the provider shuts down within this many days.
BASE_MODEL_SHUTDOWN_GUARD_DAYS: int = env.int("BASE_MODEL_SHUTDOWN_GUARD_DAYS", default=30)
if FINE_TUNING_PROVIDER == "openai" and not DEBUG and not OPENAI_API_KEY:
    raise ImproperlyConfigured("OPENAI_API_KEY must be set for the openai fine-tuning provider.")

AB_TEST_PLANNED_LOOKS: int = env.int("AB_TEST_PLANNED_LOOKS", default=8)
AB_TEST_AUTO_PROMOTE: bool = env.bool("AB_TEST_AUTO_PROMOTE", default=False)
# The leads an A/B test plans to see (its information fraction is leads so far / this) and the
# relative lift in per-message value it is powered to detect.
AB_TEST_PLANNED_LEADS: int = env.int("AB_TEST_PLANNED_LEADS", default=20_000)
AB_TEST_MINIMUM_EFFECT: float = env.float("AB_TEST_MINIMUM_EFFECT", default=0.15)
# The HMAC key of stored lead keys (outcomes.leads); empty: derived from SECRET_KEY.
LEAD_KEY_HASH_SECRET: str = env.str("LEAD_KEY_HASH_SECRET", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Open-weights fine-tuning (FINE_TUNING_PROVIDER=openweights) ------------------------------
# The base model: a local directory in Hugging Face format (or a hub id where a hub is reachable).
OPENWEIGHTS_BASE_MODEL: str = env.str("OPENWEIGHTS_BASE_MODEL", default="")
OPENWEIGHTS_BASE_MODEL_NAME: str = env.str("OPENWEIGHTS_BASE_MODEL_NAME", default="")  # blank: the directory's name
# The django-q2 cluster that trains (an ALT_CLUSTERS name served by GPU workers); blank: the normal one.
OPENWEIGHTS_Q_CLUSTER: str = env.str("OPENWEIGHTS_Q_CLUSTER", default="")
# Its workers (`Q_CLUSTER_NAME=<name> manage.py qcluster`) run one trainer each for up to this long.
OPENWEIGHTS_Q_WORKERS: int = env.int("OPENWEIGHTS_Q_WORKERS", default=1)
OPENWEIGHTS_Q_TIMEOUT: int = env.int("OPENWEIGHTS_Q_TIMEOUT", default=86400)
# django-q2 reads ALT_CLUSTERS whenever Q_CLUSTER_NAME names another cluster (and fails without it).
Q_CLUSTER["ALT_CLUSTERS"] = {}
if OPENWEIGHTS_Q_CLUSTER:
    Q_CLUSTER["ALT_CLUSTERS"][OPENWEIGHTS_Q_CLUSTER] = {
        "workers": OPENWEIGHTS_Q_WORKERS,
        "timeout": OPENWEIGHTS_Q_TIMEOUT,
        "retry": OPENWEIGHTS_Q_TIMEOUT + 600,
    }
# How the trainer module is started, e.g. "accelerate launch --num_processes 8"; blank: this Python.
OPENWEIGHTS_LAUNCHER: str = env.str("OPENWEIGHTS_LAUNCHER", default="")
# Job directories (a shared mount when GPU workers and pollers run on different machines).
OPENWEIGHTS_JOBS_DIR: str = env.str("OPENWEIGHTS_JOBS_DIR", default="")  # blank: MEDIA_ROOT/openweights/jobs
OPENWEIGHTS_STORAGE: str = env.str("OPENWEIGHTS_STORAGE", default="default")  # a STORAGES alias
OPENWEIGHTS_ARTIFACTS_ROOT: str = env.str("OPENWEIGHTS_ARTIFACTS_ROOT", default="openweights")
OPENWEIGHTS_CACHE_DIR: str = env.str("OPENWEIGHTS_CACHE_DIR", default="")  # blank: MEDIA_ROOT/openweights/cache
OPENWEIGHTS_HEARTBEAT_SECONDS: float = env.float("OPENWEIGHTS_HEARTBEAT_SECONDS", default=10.0)
OPENWEIGHTS_HEARTBEAT_TIMEOUT: float = env.float("OPENWEIGHTS_HEARTBEAT_TIMEOUT", default=300.0)
OPENWEIGHTS_CANCEL_GRACE: float = env.float("OPENWEIGHTS_CANCEL_GRACE", default=5.0)
# How many times a job whose trainer died is resumed from its last epoch checkpoint before it fails.
OPENWEIGHTS_MAX_RESUMES: int = env.int("OPENWEIGHTS_MAX_RESUMES", default=2)
OPENWEIGHTS_LORA_RANK: int = env.int("OPENWEIGHTS_LORA_RANK", default=16)
OPENWEIGHTS_LORA_ALPHA: int = env.int("OPENWEIGHTS_LORA_ALPHA", default=32)
OPENWEIGHTS_LORA_DROPOUT: float = env.float("OPENWEIGHTS_LORA_DROPOUT", default=0.05)
OPENWEIGHTS_LORA_TARGET_MODULES: str = env.str("OPENWEIGHTS_LORA_TARGET_MODULES", default="all-linear")
OPENWEIGHTS_MAX_LENGTH: int = env.int("OPENWEIGHTS_MAX_LENGTH", default=1024)
OPENWEIGHTS_SEED: int = env.int("OPENWEIGHTS_SEED", default=42)
# vLLM's OpenAI-compatible base URL (".../v1", LoRA enabled); blank: complete() generates in-process.
OPENWEIGHTS_SERVING_URL: str = env.str("OPENWEIGHTS_SERVING_URL", default="")
OPENWEIGHTS_SERVING_API_KEY: str = env.str("OPENWEIGHTS_SERVING_API_KEY", default="")
OPENWEIGHTS_SERVING_TIMEOUT: float = env.float("OPENWEIGHTS_SERVING_TIMEOUT", default=60.0)
OPENWEIGHTS_MAX_NEW_TOKENS: int = env.int("OPENWEIGHTS_MAX_NEW_TOKENS", default=256)

# The training pool's index carries its stage columns (INCLUDE) on PostgreSQL; SQLite builds the
# same index without them, which is all it can do, and says so on every command otherwise.
SILENCED_SYSTEM_CHECKS = ["models.W040"]
