"""URLs: the API under /api/ (no /v1, as the Dodo SDK expects), its docs, and the staff admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_site.api import views as api_views
from events import api as events_api
from meters import api as meters_api
from products import api as products_api

api_patterns = [
    path("events/ingest", events_api.IngestView.as_view(), name="events-ingest"),
    path("events", events_api.EventListView.as_view(), name="events-list"),
    path("events/<path:event_id>", events_api.EventDetailView.as_view(), name="events-detail"),
    path("customers", products_api.CustomerListCreateView.as_view(), name="customers"),
    path(
        "customers/<str:customer_id>",
        products_api.CustomerDetailView.as_view(),
        name="customers-detail",
    ),
    path("meters", meters_api.MeterListCreateView.as_view(), name="meters"),
    path("meters/<str:meter_id>", meters_api.MeterDetailView.as_view(), name="meters-detail"),
    path(
        "meters/<str:meter_id>/unarchive",
        meters_api.MeterUnarchiveView.as_view(),
        name="meters-unarchive",
    ),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    path("admin/", admin.site.urls),
    path("", api_views.home_redirect),
]

handler404 = "billing_site.api.views.not_found"
handler500 = "billing_site.api.views.server_error"
