"""Settings, all read from the environment (see README "Configuration")."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url

from billing_site.embedded import embedded_database_url, env_flag, filesystem_broker_options

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BILLING_DATA_DIR", BASE_DIR / ".data"))

DEBUG = env_flag("DEBUG", default=False)
_insecure_dev_key = "insecure-development-key-set-SECRET_KEY-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", _insecure_dev_key)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "billing_site",
    "events",
    "meters",
    "products",
    "credits",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_site.api.middleware.DatabaseUnavailableMiddleware",
    "billing_site.api.ratelimit.RateLimitMiddleware",  # /api/ only; see API_RATE_LIMIT_* below
    "billing_site.api.middleware.RefuseNulMiddleware",  # NUL in an /api/ URL: 404 or 422
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "billing_site.urls"
WSGI_APPLICATION = "billing_site.wsgi.application"

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

# PostgreSQL is the only dialect (jsonb, numeric, ON CONFLICT, SKIP LOCKED).
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded_database_url(DATA_DIR / "postgres")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60"))
    )
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault(
    "connect_timeout", int(os.environ.get("DB_CONNECT_TIMEOUT", "5"))
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise serves it; collectstatic fills it

# The ingest body limit: 1,000 events with generous metadata fit well inside it.
INGEST_MAX_BODY_BYTES = int(os.environ.get("INGEST_MAX_BODY_BYTES", str(5 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
# How late an event may arrive (days); events in an already invoiced period are refused anyway.
EVENT_LATE_WINDOW_DAYS = int(os.environ.get("EVENT_LATE_WINDOW_DAYS", "35"))
EVENT_FUTURE_TOLERANCE_SECONDS = 300

# Subscriptions whose periods are closed in one transaction (products/billing.py).
BILLING_BATCH_SIZE = int(os.environ.get("BILLING_BATCH_SIZE", "100"))

# The single business this installation bills for, shown as `business_id` on the wire.
BUSINESS_ID = os.environ.get("BUSINESS_ID", "bus_selfhosted")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["billing_site.api.authentication.ApiKeyAuthentication"],
    # A valid key whose scope (full, read_only, ingest_only) allows the request.
    "DEFAULT_PERMISSION_CLASSES": ["billing_site.api.permissions.ApiKeyScopePermission"],
    "DEFAULT_PAGINATION_CLASS": "billing_site.api.pagination.PageNumberPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["billing_site.api.renderers.ExactJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["billing_site.api.parsers.ExactJSONParser"],
    "EXCEPTION_HANDLER": "billing_site.api.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

# Rate limits on /api/ (billing_site/api/ratelimit.py), requests per second and per minute; 0 turns
# a window off. Per API key (overridable per key in the admin); without a valid key, per client IP.
# Shared through Redis when REDIS_URL is set, else counted in each process.
API_RATE_LIMIT_PER_SECOND = int(os.environ.get("API_RATE_LIMIT_PER_SECOND", "40"))
API_RATE_LIMIT_PER_MINUTE = int(os.environ.get("API_RATE_LIMIT_PER_MINUTE", "240"))
API_RATE_LIMIT_ANON_PER_SECOND = int(os.environ.get("API_RATE_LIMIT_ANON_PER_SECOND", "20"))
API_RATE_LIMIT_ANON_PER_MINUTE = int(os.environ.get("API_RATE_LIMIT_ANON_PER_MINUTE", "100"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Usage billing API",
    "DESCRIPTION": "Wire-compatible with the usage-billing part of the Dodo Payments API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: Redis when REDIS_URL is set, else the filesystem transport under the data folder.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
else:
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(DATA_DIR / "broker")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
