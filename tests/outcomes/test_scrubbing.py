"""Personal data never survives scrubbing; prices, dates and placeholders do."""

import re

import pytest

from outcomes.scrubbing import may_hold_personal_data, scrub

PROSPECT = {"first_name": "Jane", "last_name": "Doe", "company": "Acme Inc."}


def test_no_personal_data_survives_a_realistic_message() -> None:
    text = (
        "Subject: Jane, quick idea for ACME\n\n"
        "Hi Jane Doe,\n\nI saw Acme Inc. (acme's SDR team) doubled this year. Book a slot at "
        "https://calendly.com/sam/15min?utm_source=seq&rid=8f3a2 or reply to sam@vendor.io / jane.doe@acme.com.\n"
        "Or call me: +1 (415) 555-0132. Our customers booked 2,500 meetings in Q3 2024, up 45%, "
        "for $15,000 a year.\n\nBest,\nSam\nwww.vendor.io/unsubscribe?u=jane.doe"
    )

    scrubbed = scrub(text, **PROSPECT)

    for survivor in ("jane", "doe", "acme", "calendly", "vendor.io", "@", "555", "0132", "utm_source"):
        assert survivor not in scrubbed.lower(), scrubbed
    for kept in ("2,500 meetings", "Q3 2024", "45%", "$15,000"):
        assert kept in scrubbed
    opening = "Subject: {{first_name}}, quick idea for {{company}}\n\nHi {{first_name}} {{last_name}},"
    assert scrubbed.startswith(opening)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi Jane,", "Hi {{first_name}},"),
        ("HI JANE DOE", "HI {{first_name}} {{last_name}}"),
        ("jane.doe and jane_doe", "{{first_name}}.{{last_name}} and {{first_name}}_{{last_name}}"),
        ("Acme Inc. and Acme's team", "{{company}} and {{company}}'s team"),  # also without "Inc."
        ("Janet Doerr from Acmeville", "Janet Doerr from Acmeville"),  # whole words only
    ],
)
def test_it_replaces_the_prospects_names_and_company(text: str, expected: str) -> None:
    assert scrub(text, **PROSPECT) == expected


def test_longer_values_are_replaced_first() -> None:
    scrubbed = scrub("Jane Doe Consulting hired Jane.", first_name="Jane", company="Jane Doe Consulting")

    assert scrubbed == "{{company}} hired {{first_name}}."


def test_values_shorter_than_two_characters_are_skipped() -> None:
    assert scrub("J. Doe, a team of A players", first_name="J", last_name="Doe", company="A") == (
        "J. {{last_name}}, a team of A players"
    )


def test_text_whose_lower_case_changes_length_is_still_scrubbed() -> None:
    # "İ" lower-cases to two characters, which the fast path cannot handle.
    assert scrub("İstanbul office: Jane at Acme", **PROSPECT) == "İstanbul office: {{first_name}} at {{company}}"


@pytest.mark.parametrize(
    "email", ["jane@acme.com", "Jane.Doe+sales@mail.acme.co.uk", "sam_o'neil@vendor.io", "J.DOE@ACME.IO"]
)
def test_it_replaces_email_addresses(email: str) -> None:
    assert scrub(f"Write to {email}.") == "Write to {{email}}."


def test_a_social_handle_is_not_an_email_address() -> None:
    assert scrub("Follow @vendor on X") == "Follow @vendor on X"


@pytest.mark.parametrize(
    "phone",
    [
        "+1 (415) 555-0132",
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "415 555 0132",
        "4155550132",
        "555-0132",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "020 7946 0958",
        "+49 30 1234567",
        "06 12 34 56 78",
        "(+33) 6 12 34 56 78",
        "0044-20-7946-0958",
    ],
)
def test_it_replaces_phone_numbers(phone: str) -> None:
    scrubbed = scrub(f"Call me on {phone}, or at lunch.")

    assert scrubbed == "Call me on {{phone}}, or at lunch."
    assert not re.search(r"\d", scrubbed)


@pytest.mark.parametrize(
    "text",
    [
        "It costs $15,000 a year.",
        "Budget: $1500000 or $ 2500000.",
        "Deals of 1 500 000 € or 2500000 EUR.",
        "Reply rates rose 45% (12.5% last year), 1234567% is absurd.",
        "Founded in 2019, renewed 2019-2024, best year 2024.",
        "Q3 2024 results, meeting on 2024-05-01, 12.03.2024 or 05/01/2024.",
        "3,000,000 emails sent; order 12345678901234567890; ticket ID-12345678.",
    ],
)
def test_prices_years_percentages_and_dates_are_untouched(text: str) -> None:
    assert scrub(text, **PROSPECT) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Book https://calendly.com/jane-doe/30min?utm=abc123.", "Book {{link}}."),
        ("See http://acme.com/x?id=1, then reply.", "See {{link}}, then reply."),
        ("Visit www.vendor.io/demo!", "Visit {{link}}!"),
        ("(see HTTPS://Vendor.io/Case-Study)", "(see {{link}})"),
        ("calendly.com/sam/15min works", "{{link}} works"),
        ("Track: go.vendor.co.uk/t?r=9f8e7d", "Track: {{link}}"),
    ],
)
def test_it_replaces_every_link(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize("text", ["Node.js/React shops", "24/7 support, and/or a call", "e.g./i.e. notes"])
def test_slashes_that_are_not_links_are_untouched(text: str) -> None:
    assert scrub(text) == text


def test_existing_placeholders_stay_intact_even_when_a_value_matches_their_name() -> None:
    text = "Hi {{first_name}}, {{company}} and {{link}} and {{ email }}"

    assert scrub(text, first_name="Link", last_name="Email", company="Company") == text


def test_placeholders_made_by_earlier_passes_are_not_touched_by_names() -> None:
    scrubbed = scrub("Mail jane@acme.com or see https://acme.com/x", first_name="Email", company="Link")

    assert scrubbed == "Mail {{email}} or see {{link}}"


def test_empty_text_and_an_anonymous_prospect_are_fine() -> None:
    assert scrub("") == ""
    assert scrub("Hi there, worth a call?") == "Hi there, worth a call?"


# --- The prefilter: a superset of what scrub replaces ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Call +1 (415) 555-0199 today",
        "Call 4 1 5 5 5 5 1",
        "Call 415.555.0199 ext 12",
        "Write to JANE at ACME",
        "jane_doe was here",
        "Visit wWw.acme.com or WWW.ACME.COM",
        "see acme.io/pricing",
        "mail jane@acme.com",
        "Greetings from Acme, Inc. and acme",
    ],
)
def test_the_personal_data_guard_never_skips_a_text_that_scrub_would_change(text: str) -> None:
    names = {"first_name": "Jane", "last_name": "Doe", "company": "Acme, Inc."}
    assert scrub(text, **names) != text
    assert may_hold_personal_data(text, names["first_name"], names["last_name"], names["company"])


@pytest.mark.parametrize(
    ("text", "first_name"),
    [
        ("Hi {{first_name}}, teams cut forecast prep by 40% in 2024; reference 12345.", "Jane"),
        ("Our customers at {{company}} split the atom.", "Tom"),  # "tom" only inside other words
    ],
)
def test_the_personal_data_guard_lets_clean_text_through(text: str, first_name: str) -> None:
    assert scrub(text, first_name=first_name, last_name="Doe", company="Acme Inc.") == text
    assert not may_hold_personal_data(text, first_name, "Doe", "Acme Inc.")
