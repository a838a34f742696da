"""Dodo's paging: 0-based `page_number`, `page_size` (default 10, max 100), `{"items": [...]}`."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
MAX_SQL_OFFSET = 2**63 - 1


def page_params(query_params) -> tuple[int, int]:
    """Read and check paging; a bad value is a 422 naming the parameter, never a silent default."""
    values = {}
    for name, default, maximum in (
        ("page_number", 0, None),
        ("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
    ):
        raw = query_params.get(name)
        if raw in (None, ""):
            values[name] = default
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError({name: ["Must be an integer."]}) from None
        if value < 0 or (maximum is not None and value > maximum):
            bounds = f"between 0 and {maximum}" if maximum is not None else "0 or more"
            raise ValidationError({name: [f"Must be {bounds}."]})
        values[name] = value
    return values["page_number"], values["page_size"]


class PageNumberPagination(pagination.BasePagination):
    def paginate_queryset(self, queryset, request, view=None):
        page_number, page_size = page_params(request.query_params)
        offset = page_number * page_size
        if offset + page_size > MAX_SQL_OFFSET:
            return []  # past the end of any list, and beyond what LIMIT/OFFSET (bigint) can take
        return list(queryset[offset : offset + page_size])

    def get_paginated_response(self, data) -> Response:
        return Response({"items": data})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {"type": "object", "properties": {"items": schema}, "required": ["items"]}

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": "page_number",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "default": 0},
            },
            {
                "name": "page_size",
                "in": "query",
                "required": False,
                "schema": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_PAGE_SIZE,
                    "default": DEFAULT_PAGE_SIZE,
                },
            },
        ]


def paged_response(request, queryset, render) -> Response:
    """One page of `queryset`, each item rendered to wire data by `render`."""
    paginator = PageNumberPagination()
    return paginator.get_paginated_response(
        [render(item) for item in paginator.paginate_queryset(queryset, request)]
    )
