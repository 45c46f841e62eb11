"""How the admin writes numbers, money, dates and pools: one way, in Python and in templates alike."""

import datetime
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.utils import formats

from flywheel import formatting
from flywheel.models import Organization


@pytest.mark.parametrize(
    ("fraction", "text"),
    [
        (0.1, "10 %"),
        (0.123, "12.3 %"),
        (0.12345, "12.3 %"),
        (1, "100 %"),
        (0.0035, "0.35 %"),
        (0.00001, "< 0.01 %"),
        (0, "0 %"),
        (None, "-"),
    ],
)
def test_a_fraction_reads_in_percent_with_one_decimal_or_two_below_one_percent(
    fraction: float | None, text: str
) -> None:
    assert formatting.percent(fraction) == text


def test_a_number_already_in_percent_reads_like_a_fraction_in_percent() -> None:
    assert formatting.percentage(10.0) == formatting.percent(0.1) == "10 %"
    assert formatting.percentage(33.333) == "33.3 %"


def test_a_change_in_percent_carries_its_sign_and_zero_none() -> None:
    assert [formatting.signed_percent(value) for value in (12.34, -4, 0, None)] == ["+12.3 %", "-4 %", "0 %", "-"]


def test_a_rate_with_its_interval_names_the_percent_once_at_the_end() -> None:
    number = {"value": 0.125, "low": 0.0912, "high": 0.159}
    assert formatting.percent_interval(number) == "12.5 % (9.1 to 15.9 %)"
    assert formatting.percent_interval(None) == "-"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("1234.5"), "USD", "$1,234.50"),
        (1234567.891, "USD", "$1,234,567.89"),
        (Decimal("-3"), "USD", "-$3.00"),
        (Decimal("0.0042"), "USD", "< $0.01"),
        (Decimal("0"), "USD", "$0.00"),
        (Decimal("99.9"), "EUR", "€99.90"),
        (Decimal("5"), "CHF", "5.00 CHF"),
        (None, "USD", "-"),
    ],
)
def test_an_amount_has_its_currency_thousands_separators_and_cents(
    amount: Decimal | float | None, currency: str, text: str
) -> None:
    assert formatting.money(amount, currency) == text


def test_counts_have_thousands_separators_and_measures_fixed_decimals() -> None:
    assert formatting.count(1234567) == "1,234,567"
    assert formatting.decimal(0.71234) == "0.71"
    assert formatting.decimal(0.71234, 4) == "0.7123"
    assert formatting.decimal("n/a") == "-"  # a provider's metric that is not a number


def test_dates_and_moments_read_as_iso_days_and_minutes_in_the_current_time_zone() -> None:
    moment = datetime.datetime(2026, 12, 5, 16, 35, 7, tzinfo=datetime.UTC)
    assert formatting.date(moment) == "2026-12-05"
    assert formatting.date(datetime.date(2026, 1, 2)) == "2026-01-02"
    assert formatting.datetime(moment) == "2026-12-05 16:35"
    assert formatting.datetime(moment, seconds=True) == "2026-12-05 16:35:07"
    assert formatting.datetime(1_700_000_000) == "2023-11-14 22:13"  # a provider's Unix time, in UTC
    assert formatting.date(None) == formatting.datetime(None) == "-"


def test_a_pool_reads_as_its_organization_name_and_the_global_pool_as_global_model() -> None:
    assert formatting.pool_name(Organization(name="Acme")) == "Acme"
    assert formatting.pool_name(None) == "Global model"


def test_the_template_filters_write_what_the_functions_write() -> None:
    template = Template(
        "{% load flywheel_format %}{{ share|percent }}|{{ cost|money }}|{{ day|short_date }}|{{ missing|percent }}"
        "|{{ pool|pool_name }}"
    )
    context = {"share": 0.1, "cost": Decimal("1234.5"), "day": datetime.date(2026, 12, 5), "pool": None}
    assert template.render(Context(context)) == "10 %|$1,234.50|2026-12-05|-|Global model"


def test_the_admin_writes_its_own_date_columns_in_the_same_form() -> None:
    moment = datetime.datetime(2026, 12, 5, 16, 35, tzinfo=datetime.UTC)
    assert formats.localize(moment) == formatting.datetime(moment)
    assert formats.localize(moment.date()) == formatting.date(moment)
