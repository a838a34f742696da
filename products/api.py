"""Customers API (and, in later parts, products, subscriptions and invoices)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers

from billing_site.api.fields import parse_query_datetime
from billing_site.api.serializers import BusinessIdField, MetadataField
from products.models import Customer


class CustomerSerializer(serializers.ModelSerializer):
    business_id = BusinessIdField()
    metadata = MetadataField(required=False)
    phone_number = serializers.CharField(
        max_length=32, required=False, allow_null=True, allow_blank=True
    )

    def validate_email(self, value: str) -> str:
        # Deliberately loose: Dodo accepts short test domains such as "a@b.c".
        local, _, domain = value.partition("@")
        if not local or not domain or any(c.isspace() for c in value):
            raise serializers.ValidationError("Enter an email address such as name@example.com.")
        return value

    class Meta:
        model = Customer
        fields = [
            "customer_id",
            "business_id",
            "email",
            "name",
            "phone_number",
            "metadata",
            "created_at",
        ]
        read_only_fields = ["customer_id", "created_at"]


class CustomerListCreateView(generics.ListCreateAPIView):
    serializer_class = CustomerSerializer

    def get_queryset(self):
        params = self.request.query_params
        customers = Customer.objects.all()
        if params.get("email"):
            customers = customers.filter(email__iexact=params["email"])
        if params.get("name"):
            customers = customers.filter(name__icontains=params["name"])
        created_gte = parse_query_datetime(params, "created_at_gte")
        created_lte = parse_query_datetime(params, "created_at_lte")
        if created_gte is not None:
            customers = customers.filter(created_at__gte=created_gte)
        if created_lte is not None:
            customers = customers.filter(created_at__lte=created_lte)
        return customers

    @extend_schema(
        parameters=[
            OpenApiParameter("email", str, description="Exact match, case-insensitive."),
            OpenApiParameter("name", str, description="Partial match, case-insensitive."),
            OpenApiParameter("created_at_gte", str),
            OpenApiParameter("created_at_lte", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        response = super().create(request, *args, **kwargs)
        response.status_code = 200  # Dodo answers 200 with the customer
        return response


class CustomerDetailView(generics.RetrieveUpdateAPIView):
    serializer_class = CustomerSerializer
    queryset = Customer.objects.all()
    lookup_field = "customer_id"
    http_method_names = ["get", "patch", "head", "options"]
