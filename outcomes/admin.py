"""Admin for outcome labels: filters by funnel stage and quality band, and curation.

The funnel and the attribution of a label move only through events, so that model counters stay
exact; staff curate labels (exclude, annotate, give an ideal text) through ``outcome_curate``.
"""

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from flywheel import formatting
from flywheel.admin_helpers import PoolFilter
from outcomes.models import OutcomeLabel
from outcomes.scoring import CAP, score_breakdown
from outcomes.services import outcome_curate

# Deepest stage first: a label belongs to the first stage whose timestamp is set.
STAGE_FILTERS: list[tuple[str, str, Q]] = [
    ("deal_closed", "Deal closed", Q(deal_closed_at__isnull=False)),
    ("meeting_completed", "Meeting completed", Q(meeting_completed_at__isnull=False)),
    ("meeting_booked", "Meeting booked", Q(meeting_booked_at__isnull=False)),
    ("replied", "Replied", Q(replied_at__isnull=False)),
    ("clicked", "Clicked", Q(clicked_at__isnull=False)),
    ("opened", "Opened", Q(opened_at__isnull=False)),
    ("bounced", "Bounced", Q(bounced_at__isnull=False)),
    ("delivered", "Delivered", Q(delivered_at__isnull=False)),
]


class FurthestStageFilter(admin.SimpleListFilter):
    title = "furthest stage reached"
    parameter_name = "stage"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, label, _ in STAGE_FILTERS] + [("sent", "Sent only")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutcomeLabel]) -> QuerySet[OutcomeLabel]:
        value = self.value()
        if value is None:
            return queryset
        deeper = Q()
        for key, _, condition in STAGE_FILTERS:
            if key == value:
                return queryset.filter(condition).exclude(deeper) if deeper else queryset.filter(condition)
            deeper |= condition
        return queryset.exclude(deeper)


class QualityBandFilter(admin.SimpleListFilter):
    title = "quality band"
    parameter_name = "quality"
    BANDS = {"high": (0.6, 1.01), "medium": (0.2, 0.6), "low": (0.0, 0.2)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("high", "High (≥ 0.6)"), ("medium", "Medium (0.2-0.6)"), ("low", "Low (< 0.2)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutcomeLabel]) -> QuerySet[OutcomeLabel]:
        band = self.BANDS.get(self.value() or "")
        if band is None:
            return queryset
        return queryset.filter(quality_score__gte=band[0], quality_score__lt=band[1])


def _number(value: float) -> str:
    """A score's figure as the database stores it: at most six decimals, no trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def score_table(label: OutcomeLabel) -> SafeString:
    """The label's score as a table: each rubric item, whether it applies, its points, and the total.

    Computed by :func:`outcomes.scoring.score_breakdown` from the label's columns, the very
    function the score is computed by, so the table and the stored score cannot disagree.
    """
    breakdown = score_breakdown({field.attname: getattr(label, field.attname) for field in label._meta.concrete_fields})
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (line.label, _number(line.weight), "yes" if line.applies else "no", _number(line.points))
            for line in breakdown.lines
        ),
    )
    cap = format_html('<tr><td colspan="3">Capped at</td><td>{}</td></tr>', _number(CAP)) if breakdown.capped else ""
    return format_html(
        '<table class="score-breakdown"><thead><tr><th>Rubric item</th><th>Weight</th><th>Applies</th>'
        '<th>Points</th></tr></thead><tbody>{}<tr><td colspan="3">Sum</td><td>{}</td></tr>{}'
        '<tr><th colspan="3">Quality score</th><th>{}</th></tr></tbody></table>',
        rows,
        _number(breakdown.sum),
        cap,
        _number(breakdown.total),
    )


@admin.register(OutcomeLabel)
class OutcomeLabelAdmin(admin.ModelAdmin[OutcomeLabel]):
    # The columns a person scans; the segment, the prospect and the message are on the label's page.
    list_display = [
        "external_id",
        "pool",
        "model_version",
        "stage",
        "quality",
        "deal",
        "excluded",
        "sent_at",
    ]
    list_filter = [
        FurthestStageFilter,
        QualityBandFilter,
        ("organization", PoolFilter),
        "excluded_from_training",
        "industry",
        "framework",
        "tone",
        "channel",
    ]
    search_fields = ["external_id", "subject", "industry", "role"]
    list_select_related = ["organization", "model"]
    raw_id_fields = ["organization", "model"]
    readonly_fields = ["id", "quality_score", "furthest_stage", "score_breakdown", "created_at", "updated_at"]
    date_hierarchy = "sent_at"
    show_full_result_count = False
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["id", "organization", "external_id", "model", "quality_score", "furthest_stage"]}),
        ("Quality score, item by item", {"fields": ["score_breakdown"]}),
        (
            "Segment",
            {"fields": ["industry", "role", "company_size", "framework", "tone", "channel", "icp_match_score"]},
        ),
        ("Prospect", {"fields": ["first_name", "last_name", "company"]}),
        ("Message", {"fields": ["prompt", "subject", "body"]}),
        (
            "Funnel",
            {
                "fields": [
                    "sent_at",
                    "delivered_at",
                    "opened_at",
                    "clicked_at",
                    "replied_at",
                    "reply_sentiment",
                    "meeting_booked_at",
                    "meeting_completed_at",
                    "deal_closed_at",
                    "deal_value",
                    "bounced_at",
                    "unsubscribed_at",
                ]
            },
        ),
        ("Curation", {"fields": ["excluded_from_training", "reviewer_note", "ideal_body"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="pool", ordering="organization__name")
    def pool(self, label: OutcomeLabel) -> str:
        return formatting.pool_name(label.organization)

    @admin.display(description="model", ordering="model__model_version")
    def model_version(self, label: OutcomeLabel) -> str:
        return label.model.model_version if label.model else formatting.MISSING

    @admin.display(description="stage")
    def stage(self, label: OutcomeLabel) -> str:
        return label.furthest_stage.replace("_", " ")

    @admin.display(description="excluded", boolean=True, ordering="excluded_from_training")
    def excluded(self, label: OutcomeLabel) -> bool:
        return label.excluded_from_training

    @admin.display(description="quality", ordering="quality_score")
    def quality(self, label: OutcomeLabel) -> str:
        return formatting.decimal(label.quality_score)

    @admin.display(description="deal", ordering="deal_value")
    def deal(self, label: OutcomeLabel) -> str:
        return formatting.money(label.deal_value)

    def get_readonly_fields(self, request: HttpRequest, obj: OutcomeLabel | None = None) -> list[str]:
        # Funnel and attribution move only through events, so that model counters stay exact;
        # staff curate labels (exclude, annotate, give an ideal text) but do not rewrite history.
        if obj is None:
            return self.readonly_fields
        editable = {"excluded_from_training", "reviewer_note", "ideal_body"}
        return [f.name for f in OutcomeLabel._meta.fields if f.name not in editable] + [
            "furthest_stage",
            "score_breakdown",
        ]

    @admin.display(description="score breakdown")
    def score_breakdown(self, label: OutcomeLabel) -> SafeString:
        return score_table(label)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: OutcomeLabel, form: Any, change: bool) -> None:
        outcome_curate(
            label=obj,
            excluded_from_training=obj.excluded_from_training,
            reviewer_note=obj.reviewer_note,
            ideal_body=obj.ideal_body,
        )
