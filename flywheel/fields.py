"""Serializer fields shared by the API: finite floats and traffic percentages.

Importing this module also registers :class:`PercentageFieldSchema`, the drf-spectacular
extension that states the percentage's exclusive minimum in the schema.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers


class FiniteFloatField(serializers.FloatField):
    """A float that refuses NaN and the infinities.

    DRF's ``FloatField`` takes the strings "NaN" and "inf", and NaN passes every min/max check
    (all comparisons with it are false), so it would reach a database CHECK constraint as a 500.
    """

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if value != value or value in (float("inf"), float("-inf")):
            self.fail("invalid")
        return value


class PercentageField(FiniteFloatField):
    """A share of traffic: above 0 and at most 100 (0 would deploy a model nobody is routed to)."""

    def __init__(self, **kwargs: Any) -> None:
        # No min_value: its validator would state an inclusive minimum in the schema.
        super().__init__(max_value=100.0, **kwargs)

    def to_internal_value(self, data: Any) -> float:
        value = super().to_internal_value(data)
        if value <= 0:
            raise serializers.ValidationError("Must be above 0.")
        return value


class PercentageFieldSchema(OpenApiSerializerFieldExtension):
    """The schema says what :class:`PercentageField` accepts: 0 itself is excluded."""

    target_class = PercentageField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        return {"type": "number", "format": "double", "minimum": 0, "exclusiveMinimum": True, "maximum": 100}
