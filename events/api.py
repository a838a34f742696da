"""Events API: `POST /events/ingest`, `GET /events`, `GET /events/{event_id}`."""

from __future__ import annotations

from django.conf import settings
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import filter_exact, parse_query_datetime
from billing_site.api.strict import PAGING, StrictQueryMixin
from billing_site.errors import DomainError, NotFound
from events.models import Event
from events.partitions import Month
from events.queries import (
    EventsArchived,
    archived_before,
    refuse_archived_event,
    refuse_archived_ranges,
)
from products.billing import ingest_events


class EventSerializer(serializers.ModelSerializer):
    business_id = serializers.SerializerMethodField()

    class Meta:
        model = Event
        fields = ["event_id", "business_id", "customer_id", "event_name", "timestamp", "metadata"]

    def get_business_id(self, event: Event) -> str:
        return settings.BUSINESS_ID


class EventInputSerializer(serializers.Serializer):
    """For the schema only: ingestion validates the raw body itself, exactly and in one pass."""

    event_id = serializers.CharField(max_length=255)
    customer_id = serializers.CharField(max_length=255)
    event_name = serializers.CharField(max_length=255)
    timestamp = serializers.DateTimeField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)


class ConflictingFilters(DomainError):
    """Dodo answers 400 for "conflicting meter/event names" on GET /events."""

    status = 400
    code = "INVALID_REQUEST"


class IngestView(StrictQueryMixin, APIView):
    @extend_schema(
        request=inline_serializer("IngestRequest", {"events": EventInputSerializer(many=True)}),
        responses=inline_serializer(
            "IngestResponse", {"ingested_count": serializers.IntegerField()}
        ),
        summary="Ingest a batch of 1 to 1,000 usage events",
    )
    def post(self, request):
        ingested_count = ingest_events(request.body, now=timezone.now())
        return Response({"ingested_count": ingested_count})


class EventListView(StrictQueryMixin, generics.ListAPIView):
    serializer_class = EventSerializer
    query_params = ("customer_id", "event_name", "meter_id", "start", "end", *PAGING)

    def get_queryset(self):
        params = self.request.query_params
        events = Event.objects.all()
        events = filter_exact(events, params, ("customer_id", "event_name"))
        if params.get("meter_id"):
            events = self._matching(events, params["meter_id"], params.get("event_name"))
        start = parse_query_datetime(params, "start")
        end = parse_query_datetime(params, "end")
        self._refuse_archived(start, end)
        if start is not None:
            events = events.filter(timestamp__gte=start)
        if end is not None:
            events = events.filter(timestamp__lt=end)
        return events.order_by("-timestamp", "-id")

    @extend_schema(
        parameters=[
            OpenApiParameter("customer_id", str),
            OpenApiParameter("event_name", str),
            OpenApiParameter("meter_id", str),
            OpenApiParameter("start", str, description="Inclusive, ISO 8601."),
            OpenApiParameter("end", str, description="Exclusive, ISO 8601."),
        ],
        description=(
            "Extension: a `start` in a month archived by `manage.py archive_events`, or an "
            "`end` at or before the first month still stored, answers 409 `EVENTS_ARCHIVED` "
            "naming that month instead of a short list. Without `start` the list is of the "
            "events still stored."
        ),
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @staticmethod
    def _refuse_archived(start, end) -> None:
        """A range that reaches into archived months is refused, not answered short: an empty
        or partial page would read as "no events then". Without `start` the list is of the
        events still stored, unless `end` says every one asked for is archived."""
        if start is not None:
            refuse_archived_ranges([(start, end or start)], "This list of events")
        elif end is not None:
            horizon = archived_before()
            if horizon is not None and end <= horizon:
                raise EventsArchived(
                    f"This list of events ends at {end.isoformat()}, but the events of every "
                    f"month before {Month.of(horizon)} are archived: none of them is stored. "
                    f"Ask from {horizon.isoformat()} on."
                )

    @staticmethod
    def _matching(events, meter_id: str, event_name: str | None):
        """Exactly the events the meter matches: its event name and its filter, in SQL."""
        from meters.models import Meter
        from meters.usage import matching_events_sql

        meter = Meter.objects.filter(id=meter_id).first()
        if meter is None:
            raise NotFound(
                f"No meter {meter_id!r}.",
                errors=[{"field": "meter_id", "message": f"No meter {meter_id!r}."}],
            )
        if event_name and event_name != meter.event_name:
            message = f"Must match the meter's event name {meter.event_name!r}."
            raise ConflictingFilters(
                f"event_name: {message}", errors=[{"field": "event_name", "message": message}]
            )
        condition, params = matching_events_sql(meter, alias='"events_event"')
        return events.filter(RawSQL(condition, params, output_field=BooleanField()))


class EventDetailView(StrictQueryMixin, generics.RetrieveAPIView):
    serializer_class = EventSerializer
    queryset = Event.objects.all()
    lookup_field = "event_id"

    @extend_schema(
        description=(
            "404 for an id never stored. Extension: 409 `EVENTS_ARCHIVED` for an event stored "
            "in a month since archived (`manage.py archive_events`): its key says it was "
            "stored, its row is gone."
        )
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_object(self) -> Event:
        try:
            return super().get_object()
        except Http404:
            refuse_archived_event(self.kwargs[self.lookup_field])
            raise
