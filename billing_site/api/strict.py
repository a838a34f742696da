"""The API side of billing_site/strict.py: serializers that refuse undeclared body fields and
views that refuse query parameters they do not read, each a 422 naming the field."""

from __future__ import annotations

from rest_framework import serializers

from billing_site.strict import (
    LOCALE,
    PAGING,
    UNKNOWN_PARAMETER,
    refuse,
    refuse_unknown,
    unknown_fields,
    unsupported,
)

__all__ = [
    "LOCALE",
    "PAGING",
    "StrictFieldsMixin",
    "StrictQueryMixin",
    "StrictSerializer",
    "refuse",
    "refuse_unknown",
    "unknown_fields",
    "unsupported",
]


class StrictFieldsMixin:
    """For serializers: refuse body fields that are not writable fields, naming each (DRF drops
    unknown and read-only fields without a word)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            refuse_unknown(data, writable)
        return super().to_internal_value(data)


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass


class StrictQueryMixin:
    """For API views: `query_params` lists what GET reads, `write_query_params` what the other
    methods read (nothing, unless a view says so); anything else is a 422 naming the parameter,
    after authentication (a request without a valid key still gets its 401)."""

    query_params: tuple[str, ...] = ()
    write_query_params: tuple[str, ...] = ()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        reading = request.method in ("GET", "HEAD")
        allowed = set(self.query_params if reading else self.write_query_params)
        errors = [
            {"field": name, "message": UNKNOWN_PARAMETER}
            for name in request.query_params
            if name not in allowed
        ]
        refuse(errors)
