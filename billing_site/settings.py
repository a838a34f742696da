"""Settings, all read from the environment (see README "Configuration")."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from billing_site.embedded import embedded_database_url, env_flag, filesystem_broker_options

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("BILLING_DATA_DIR", BASE_DIR / ".data"))

# BILLING_ENV=production turns on every secure setting below and refuses to start without a real
# SECRET_KEY and ALLOWED_HOSTS. The default, development, is what ./scripts/demo and ./scripts/test
# run: plain HTTP on 127.0.0.1 with a development key.
BILLING_ENV = (os.environ.get("BILLING_ENV", "").strip() or "development").lower()
if BILLING_ENV not in ("development", "production"):
    raise ImproperlyConfigured(
        f"BILLING_ENV must be 'development' or 'production', not {BILLING_ENV!r}."
    )
PRODUCTION = BILLING_ENV == "production"

DEBUG = env_flag("DEBUG", default=False)
# Django's `check --deploy` warns (security.W009) about keys starting "django-insecure-", so an
# installation that forgot SECRET_KEY and BILLING_ENV is told; production refuses it outright.
_insecure_dev_key = "django-insecure-development-key-set-SECRET_KEY-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "").strip() or _insecure_dev_key
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("ALLOWED_HOSTS", "" if PRODUCTION else "*").split(",")
    if h.strip()
]
if PRODUCTION:
    # Secrets come from the environment only; a missing one stops startup with its name.
    _insecure = SECRET_KEY.startswith(("insecure-", "django-insecure-"))
    if _insecure or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            "BILLING_ENV=production needs SECRET_KEY set in the environment to a random value "
            "of at least 50 characters, e.g. the output of "
            '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "BILLING_ENV=production needs ALLOWED_HOSTS: the comma-separated host names this "
            "server answers to, e.g. billing.example.com."
        )
    if DEBUG:
        raise ImproperlyConfigured("BILLING_ENV=production refuses DEBUG=true.")

# HTTPS and browser protections; on in production, off for the plain-HTTP demo. Behind a proxy
# that terminates TLS, set SECURE_PROXY_SSL_HEADER to the header it sets to "https" (e.g.
# X-Forwarded-Proto), so requests that came in over HTTPS are recognised as secure.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env_flag("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_HSTS_SECONDS = int(
    os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600) if PRODUCTION else "0")
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION)
SECURE_HSTS_PRELOAD = env_flag("SECURE_HSTS_PRELOAD", default=PRODUCTION)
if os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    _proxy_header = os.environ["SECURE_PROXY_SSL_HEADER"].strip().upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (
        _proxy_header if _proxy_header.startswith("HTTP_") else f"HTTP_{_proxy_header}",
        "https",
    )
SECURE_CONTENT_TYPE_NOSNIFF = True
# Every HTML page (billing_site/security.py): scripts and everything else from this server only,
# never inline script or eval (the pages' scripts are static files; Plotly's bar and line charts
# and Swagger UI need neither). Inline styles stay allowed: Plotly and Swagger UI set them.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "billing_site.adminconfig.StaffAdminConfig",  # django.contrib.admin with our StaffAdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "billing_site",
    "events",
    "meters",
    "products",
    "credits",
    "webhooks",
    "portal",
    # Last: its post_migrate handler gives the staff roles the permissions of every app above,
    # which exist only once their own post_migrate has run.
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "billing_site.security.ContentSecurityPolicyMiddleware",  # on every HTML page
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # /api/ only: every error answer as JSON, 4xx with `x-should-retry: false`.
    "billing_site.api.middleware.ApiErrorFormatMiddleware",
    "billing_site.api.middleware.DatabaseUnavailableMiddleware",
    "billing_site.api.ratelimit.RateLimitMiddleware",  # /api/ only; see API_RATE_LIMIT_* below
    # /api/ only: 413 for a body over INGEST_MAX_BODY_BYTES, before it is read.
    "billing_site.api.middleware.RequestBodyLimitMiddleware",
    "billing_site.api.middleware.RefuseNulMiddleware",  # NUL in a URL or form: 404, 400 or 422
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditActorMiddleware",  # who changed what: request.user, else "system"
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
# Without DATABASE_URL the embedded server in the data folder (billing_site/embedded.py).
EMBEDDED_DATABASE_DIR = None if os.environ.get("DATABASE_URL") else DATA_DIR / "postgres"
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded_database_url(DATA_DIR / "postgres")
# Connections are kept CONN_MAX_AGE seconds; each request checks a kept one before using it, so
# the first request after a database restart reconnects instead of failing on a dead socket.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
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
# The customer portal's languages (portal/locale, compiled by `manage.py compile_translations`);
# the staff pages stay in English.
LANGUAGES = [
    ("en", "English"),
    ("de", "Deutsch"),
    ("sv", "Svenska"),
    ("it", "Italiano"),
    ("hi", "हिन्दी"),
]
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
# The events of a refused ingest request are kept this long (ids, codes, time) so that
# GET /api/events/{id}/explain can say why one was never stored; pruned daily.
REJECTED_EVENTS_RETENTION_DAYS = int(os.environ.get("REJECTED_EVENTS_RETENTION_DAYS", "7"))
# And at most this many rows in all, whatever the rate of refusals (the oldest go first).
REJECTED_EVENTS_MAX_ROWS = int(os.environ.get("REJECTED_EVENTS_MAX_ROWS", "5000000"))

# Subscriptions whose periods are closed in one transaction (products/billing.py).
BILLING_BATCH_SIZE = int(os.environ.get("BILLING_BATCH_SIZE", "100"))
# A closed period's invoice stays a draft this long, so late events still enter it; 0 finalizes
# at once (a product may override it).
BILLING_GRACE_PERIOD_MINUTES = int(os.environ.get("BILLING_GRACE_PERIOD_MINUTES", "60"))
# Invoice numbers are PREFIX-YEAR-NNNNNN, sequential and gap-free, given at finalization.
INVOICE_NUMBER_PREFIX = os.environ.get("INVOICE_NUMBER_PREFIX", "INV")

# The single business this installation bills for, shown as `business_id` on the wire.
BUSINESS_ID = os.environ.get("BUSINESS_ID", "bus_selfhosted")
# Its name, as customers see it in the portal ("Return to {business}") and in its emails.
BUSINESS_NAME = os.environ.get("BUSINESS_NAME", "").strip() or BUSINESS_ID

# The customer portal (portal/): how long a link from POST /customers/{id}/customer-portal/session
# works, in minutes.
CUSTOMER_PORTAL_SESSION_MINUTES = int(os.environ.get("CUSTOMER_PORTAL_SESSION_MINUTES", "60"))

# Email (portal links with send_email=true): printed on the console unless EMAIL_BACKEND says
# otherwise, e.g. django.core.mail.backends.smtp.EmailBackend with the EMAIL_* settings below.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"
).strip()
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_flag("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_flag("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "billing@localhost")

# Webhooks (webhooks/delivery.py): seconds an attempt may take in all (connect, send, the whole
# answer), and the waits in seconds between attempts after a failure (one attempt more than there
# are waits, then failed).
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_RETRY_SCHEDULE = [
    int(seconds)
    for seconds in os.environ.get(
        "WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000"
    ).split(",")
    if seconds.strip()
]
# Where webhooks may go (webhooks/destinations.py): https only unless WEBHOOK_ALLOW_HTTP, and only
# to public addresses, except the networks listed here (e.g. 10.0.0.0/8 for receivers on the
# internal network; the tests list 127.0.0.1/32 for their local receivers).
WEBHOOK_ALLOW_HTTP = env_flag("WEBHOOK_ALLOW_HTTP", default=False)


def _env_networks(name: str) -> list[str]:
    """The comma-separated addresses or networks of environment variable `name`, normalised;
    startup stops naming it when one is neither."""
    try:
        return [
            str(ipaddress.ip_network(network.strip(), strict=False))
            for network in os.environ.get(name, "").split(",")
            if network.strip()
        ]
    except ValueError as invalid:
        raise ImproperlyConfigured(
            f"{name} must list addresses or networks such as 10.0.0.0/8: {invalid}"
        ) from None


WEBHOOK_ALLOWED_PRIVATE_NETWORKS = _env_networks("WEBHOOK_ALLOWED_PRIVATE_NETWORKS")

# Collecting invoices (products/payments.py): `none` leaves payment to whatever the user runs
# (POST /api/invoices/{id}/mark-paid); `stripe` charges each issued invoice through Stripe.
PAYMENT_PROVIDER = os.environ.get("PAYMENT_PROVIDER", "none").strip().lower() or "none"
if PAYMENT_PROVIDER not in ("none", "stripe"):
    raise ImproperlyConfigured(
        f"PAYMENT_PROVIDER must be 'none' or 'stripe', not {PAYMENT_PROVIDER!r}."
    )
STRIPE_API_KEY = os.environ.get("STRIPE_API_KEY", "").strip()
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "").strip()
# Where the Stripe API is: Stripe's own by default; tests and staging point it at a local fake.
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "").strip() or "https://api.stripe.com"
if PAYMENT_PROVIDER == "stripe" and not (STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET):
    raise ImproperlyConfigured(
        "PAYMENT_PROVIDER=stripe needs STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET."
    )
# The checkout page (products/checkout_views.py) collects the card with Stripe.js and this key.
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "").strip()
# Stripe.js from Stripe itself; with STRIPE_API_BASE at a fake (localstripe), the fake's own copy
# of it (localstripe serves one at /js.stripe.com/v3/), never a CDN.
STRIPE_JS_URL = os.environ.get("STRIPE_JS_URL", "").strip() or (
    "https://js.stripe.com/v3/"
    if STRIPE_API_BASE == "https://api.stripe.com"
    else STRIPE_API_BASE.rstrip("/") + "/js.stripe.com/v3/"
)
# Where checkout_url points: this server's public address (e.g. https://billing.example.com);
# empty: the address the API request came to.
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "").strip().rstrip("/")
# How long a checkout session can be completed.
CHECKOUT_SESSION_HOURS = int(os.environ.get("CHECKOUT_SESSION_HOURS", "24"))
# Seconds one call to the provider may take; a claimed payment is leased for longer than that.
PAYMENT_PROVIDER_TIMEOUT_SECONDS = float(os.environ.get("PAYMENT_PROVIDER_TIMEOUT_SECONDS", "30"))
# Days after an invoice's first failed payment on which it is tried again; after the last
# failure its subscription goes on_hold.
try:
    DUNNING_RETRY_DAYS = [
        int(days)
        for days in os.environ.get("DUNNING_RETRY_DAYS", "1,3,5").split(",")
        if days.strip()
    ]
except ValueError:
    raise ImproperlyConfigured("DUNNING_RETRY_DAYS must list whole days, e.g. 1,3,5.") from None
if sorted(set(DUNNING_RETRY_DAYS)) != DUNNING_RETRY_DAYS or any(d <= 0 for d in DUNNING_RETRY_DAYS):
    raise ImproperlyConfigured("DUNNING_RETRY_DAYS must be increasing positive days, e.g. 1,3,5.")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["billing_site.api.authentication.ApiKeyAuthentication"],
    # A valid key whose scope (full, read_only, ingest_only) allows the request.
    "DEFAULT_PERMISSION_CLASSES": ["billing_site.api.permissions.ApiKeyScopePermission"],
    "DEFAULT_PAGINATION_CLASS": "billing_site.api.pagination.PageNumberPagination",
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
API_RATE_LIMIT_PROVIDER_PER_SECOND = int(
    os.environ.get("API_RATE_LIMIT_PROVIDER_PER_SECOND", "200")
)

# Reverse proxies (load balancers) in front of the web process, as addresses or networks: a
# request from one of them is counted (API rate limits, login throttle) by the client address
# it appends to X-Forwarded-For (billing_site/client_address.py). Empty: REMOTE_ADDR, and a
# client's own X-Forwarded-For is ignored.
TRUSTED_PROXIES = _env_networks("TRUSTED_PROXIES")

# Staff login throttling (billing_site/login_throttle.py): after this many failed logins for one
# user name, or from one client address (billing_site/client_address.py), within the window,
# logins are refused.
LOGIN_THROTTLE_FAILURES = int(os.environ.get("LOGIN_THROTTLE_FAILURES", "5"))
LOGIN_THROTTLE_IP_FAILURES = int(os.environ.get("LOGIN_THROTTLE_IP_FAILURES", "20"))
LOGIN_THROTTLE_WINDOW_SECONDS = int(os.environ.get("LOGIN_THROTTLE_WINDOW_SECONDS", "900"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Usage billing API",
    "DESCRIPTION": "Wire-compatible with the usage-billing part of the Dodo Payments API.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Its `check --deploy` hook builds the whole schema and reports documentation hints (views
    # without a serializer class, operationId suffixes), not deployment risks; the schema is
    # checked by tests/fuzz instead, so `check --deploy` lists only what a deployment must fix.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
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
# Webhook deliveries wait on other people's servers, so they have a queue of their own: a slow
# receiver then holds only the workers of that queue, never billing, credits or rollups. A worker
# started without -Q consumes both; production runs `-Q celery` and `-Q webhooks` apart.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [Queue("celery"), Queue("webhooks")]
CELERY_TASK_ROUTES = {
    "webhooks.deliver": {"queue": "webhooks"},
    "webhooks.deliver_due": {"queue": "webhooks"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # The stripe library logs every request and answer at INFO.
    "loggers": {"stripe": {"level": "WARNING"}},
}
