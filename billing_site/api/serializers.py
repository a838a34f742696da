"""Serializer pieces every app's API uses."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing_site.metadata import (
    MAX_FRACTION_DIGITS,
    MAX_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_NUMBER_MAGNITUDE,
    MAX_STRING_VALUE_LENGTH,
    is_storable_number,
)


class BusinessIdField(serializers.Field):
    """`business_id` on every object: this installation bills for one business."""

    def __init__(self, **kwargs):
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value) -> str:
        return settings.BUSINESS_ID


# A JSON value that is a string, number or boolean, for schemas of flat metadata and filters.
SCALAR_SCHEMA = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
METADATA_SCHEMA = {
    "type": "object",
    "maxProperties": MAX_METADATA_KEYS,
    "additionalProperties": {
        "oneOf": [
            {"type": "string", "maxLength": MAX_STRING_VALUE_LENGTH},
            {
                "type": "number",
                "minimum": -int(MAX_NUMBER_MAGNITUDE),
                "exclusiveMinimum": True,
                "maximum": int(MAX_NUMBER_MAGNITUDE),
                "exclusiveMaximum": True,
            },
            {"type": "boolean"},
        ]
    },
}


@extend_schema_field(METADATA_SCHEMA)
class MetadataField(serializers.DictField):
    """Flat `{str: string | number | boolean}` metadata, as on Dodo objects."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys are allowed.")
        for key, item in value.items():
            if not key or len(key) > MAX_KEY_LENGTH:
                raise serializers.ValidationError(f"Keys must be 1 to {MAX_KEY_LENGTH} characters.")
            if not isinstance(item, str | int | float | Decimal | bool) or (
                isinstance(item, str) and len(item) > MAX_STRING_VALUE_LENGTH
            ):
                raise serializers.ValidationError(
                    f"{key}: values must be strings (at most 500 characters), numbers or booleans."
                )
            if not isinstance(item, bool | str) and not is_storable_number(item):
                # As on events: 1e999999 would overflow the jsonb numeric (a 500), NaN is no JSON.
                raise serializers.ValidationError(
                    f"{key}: numbers must be below 1e20 in magnitude with at most "
                    f"{MAX_FRACTION_DIGITS} decimals."
                )
        return value
