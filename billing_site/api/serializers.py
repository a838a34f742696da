"""Serializer pieces every app's API uses."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from rest_framework import serializers

from events.ingest import MAX_METADATA_KEYS


class BusinessIdField(serializers.Field):
    """`business_id` on every object: this installation bills for one business."""

    def __init__(self, **kwargs):
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value) -> str:
        return settings.BUSINESS_ID


class MetadataField(serializers.DictField):
    """Flat `{str: string | number | boolean}` metadata, as on Dodo objects."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys are allowed.")
        for key, item in value.items():
            if not key or len(key) > 100:
                raise serializers.ValidationError("Keys must be 1 to 100 characters.")
            if not isinstance(item, str | int | float | Decimal | bool) or (
                isinstance(item, str) and len(item) > 500
            ):
                raise serializers.ValidationError(
                    f"{key}: values must be strings (at most 500 characters), numbers or booleans."
                )
        return value
