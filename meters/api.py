"""Meters API, Dodo-compatible: create, list (`archived`), retrieve, update, archive, unarchive."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.fields import parse_query_bool
from billing_site.api.serializers import SCALAR_SCHEMA, BusinessIdField
from billing_site.api.strict import LOCALE, PAGING, StrictQueryMixin, StrictSerializer
from billing_site.jsonutil import ExactJSONEncoder
from meters import services
from meters.filters import CONJUNCTIONS, MAX_CLAUSES, MAX_KEY_LENGTH, OPERATORS, homogeneous
from meters.health import meter_health
from meters.models import DODO_FALLBACK, Aggregation, Meter


class MeterSerializer(serializers.ModelSerializer):
    business_id = BusinessIdField()
    aggregation = serializers.SerializerMethodField()
    filter = serializers.SerializerMethodField()
    archived = serializers.BooleanField(source="is_archived", read_only=True)
    rollups_ready = serializers.BooleanField(read_only=True)
    backfill_progress = serializers.FloatField(read_only=True)

    class Meta:
        model = Meter
        fields = [
            "id",
            "business_id",
            "name",
            "description",
            "event_name",
            "measurement_unit",
            "aggregation",
            "filter",
            "created_at",
            "updated_at",
            "archived",
            "rollups_ready",
            "backfill_progress",
        ]

    def get_aggregation(self, meter: Meter) -> dict:
        return services.wire_aggregation(meter.aggregation_type, meter.aggregation_key)

    def get_filter(self, meter: Meter) -> dict | None:
        return homogeneous(meter.filter)


# Schemas for the OpenAPI document only (the meter rules validate): they let clients, and the
# schema fuzz tests, build near-valid meters instead of arbitrary JSON.
AGGREGATION_SCHEMA = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": list(Aggregation.values)},
        "key": {"type": "string", "maxLength": 100, "nullable": True},
        # An extension: what `services.wire_aggregation` answers for unique_count and min.
        "extended_type": {"type": "string", "enum": list(DODO_FALLBACK), "nullable": True},
    },
}
_CONDITION_SCHEMA = {
    "type": "object",
    "required": ["key", "operator", "value"],
    "properties": {
        "key": {"type": "string", "maxLength": MAX_KEY_LENGTH},
        "operator": {"type": "string", "enum": list(OPERATORS)},
        "value": SCALAR_SCHEMA,
    },
}


def _group_schema(clauses: dict) -> dict:
    return {
        "type": "object",
        "required": ["conjunction", "clauses"],
        "properties": {
            "conjunction": {"type": "string", "enum": list(CONJUNCTIONS)},
            "clauses": {"type": "array", "minItems": 1, "maxItems": MAX_CLAUSES, "items": clauses},
        },
    }


# Up to 3 levels: conditions, or groups of conditions, or groups of those.
FILTER_SCHEMA = {
    **_group_schema(
        {
            "oneOf": [
                _CONDITION_SCHEMA,
                _group_schema({"oneOf": [_CONDITION_SCHEMA, _group_schema(_CONDITION_SCHEMA)]}),
            ]
        }
    ),
    "nullable": True,
}


@extend_schema_field(AGGREGATION_SCHEMA)
class AggregationField(serializers.JSONField):
    pass


@extend_schema_field(FILTER_SCHEMA)
class FilterField(serializers.JSONField):
    pass


class MeterInputSerializer(StrictSerializer):
    """Plain fields; `aggregation` and `filter` are checked by the meter rules, which name
    every bad field (`filter.clauses[1].operator`)."""

    name = serializers.CharField(max_length=255)
    description = serializers.CharField(
        max_length=2000, required=False, allow_null=True, allow_blank=True
    )
    event_name = serializers.CharField(max_length=255)
    measurement_unit = serializers.CharField(max_length=100)
    # The exact encoder: bodies are parsed with Decimal numbers, which DRF's check (a plain
    # `json.dumps`) would refuse as "not valid JSON".
    aggregation = AggregationField(encoder=ExactJSONEncoder)
    filter = FilterField(required=False, allow_null=True, encoder=ExactJSONEncoder)


KEPT_WHEN_NULL = ("name", "event_name", "measurement_unit", "aggregation")


class MeterListCreateView(StrictQueryMixin, generics.ListAPIView):
    serializer_class = MeterSerializer
    query_params = ("archived", *LOCALE, *PAGING)

    def get_queryset(self):
        archived = parse_query_bool(self.request.query_params, "archived")
        meters = Meter.objects.all()
        return meters.archived() if archived else meters.active()

    @extend_schema(parameters=[OpenApiParameter("archived", bool), OpenApiParameter("locale", str)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=MeterInputSerializer, responses={201: MeterSerializer})
    def post(self, request):
        data = MeterInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        meter = services.create_meter(**data.validated_data, now=timezone.now())
        return Response(MeterSerializer(meter).data, status=status.HTTP_201_CREATED)


class MeterDetailView(StrictQueryMixin, APIView):
    query_params = LOCALE

    def get_object(self, meter_id: str) -> Meter:
        return get_object_or_404(Meter, id=meter_id)

    @extend_schema(responses=MeterSerializer)
    def get(self, request, meter_id: str):
        return Response(MeterSerializer(self.get_object(meter_id)).data)

    @extend_schema(request=MeterInputSerializer, responses=MeterSerializer)
    def patch(self, request, meter_id: str):
        meter = self.get_object(meter_id)
        body = request.data
        if isinstance(body, dict):
            # The SDK types every PATCH field as nullable; null on a field no meter can lack
            # means "keep it", like an omitted field (only `description` and `filter` clear).
            body = {k: v for k, v in body.items() if v is not None or k not in KEPT_WHEN_NULL}
        data = MeterInputSerializer(data=body, partial=True)
        data.is_valid(raise_exception=True)
        meter = services.update_meter(meter, now=timezone.now(), **data.validated_data)
        return Response(MeterSerializer(meter).data)

    @extend_schema(responses={204: None}, summary="Archive a meter")
    def delete(self, request, meter_id: str):
        services.archive_meter(self.get_object(meter_id), now=timezone.now())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeterUnarchiveView(StrictQueryMixin, APIView):
    @extend_schema(request=None, responses={200: None})
    def post(self, request, meter_id: str):
        services.unarchive_meter(get_object_or_404(Meter, id=meter_id))
        return Response(status=status.HTTP_200_OK)  # Dodo: 200 with no body


class MeterHealthView(StrictQueryMixin, APIView):
    @extend_schema(
        summary="What in recent events suggests the meter misses usage",
        description=(
            "Over the latest events of the meter's name in the last 7 days: event names that "
            "differ only by case or a small edit, metadata keys close to the aggregation or "
            "filter keys, numbers sent as strings, conditions no event passed, events of "
            "unknown customers; each with counts and examples. Not part of Dodo's API: an "
            "extension of this server."
        ),
        responses={200: OpenApiResponse(description="The meter's health.")},
    )
    def get(self, request, meter_id: str):
        meter = get_object_or_404(Meter, id=meter_id)
        return Response(meter_health(meter, now=timezone.now()).wire())
