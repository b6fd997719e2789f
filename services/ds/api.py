"""DsService (public, REST through the gateways): requests -> validated inputs, one use
case per RPC (usecases.py), results -> messages. The owner is always the verified
caller (current_identity()), never a request field."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import grpc
from typing_extensions import override

from expense.ds.v1 import ds_pb2, ds_pb2_grpc
from services.ds.domain import Direction, Outcome, ParsedSms
from services.ds.insights import Insight
from services.ds.settings import DsSettings
from services.ds.storage import StoredMessage
from services.ds.usecases import Corrections, ExplainedReport, Ingested, Insights, Sms, SmsInput
from services.kit.consistency import written_version
from services.kit.domain.errors import FieldViolation, InvalidArgument
from services.kit.domain.ids import is_uuid
from services.kit.domain.money import currencies
from services.kit.domain.timestamps import rfc3339
from services.kit.identity.tokens import current_identity

SERVICE_NAME = "expense.ds.v1.DsService"
MAX_SENDER_LENGTH = 32
# Raw bodies above this are refused outright (the parser reads at most its own limit).
MAX_BODY_LENGTH = 10_000
PERIODS = ("week", "month", "year")
OUTCOMES = {
    Outcome.TRANSACTION: ds_pb2.SMS_OUTCOME_TRANSACTION,
    Outcome.NOT_TRANSACTION: ds_pb2.SMS_OUTCOME_NOT_TRANSACTION,
    Outcome.NEEDS_REVIEW: ds_pb2.SMS_OUTCOME_NEEDS_REVIEW,
}
DIRECTIONS = {Direction.DEBIT: ds_pb2.DIRECTION_DEBIT, Direction.CREDIT: ds_pb2.DIRECTION_CREDIT}
ACTIONS = {
    "booked": ds_pb2.INGEST_ACTION_BOOKED,
    "duplicate": ds_pb2.INGEST_ACTION_DUPLICATE,
    "pending": ds_pb2.INGEST_ACTION_QUEUED_FOR_REVIEW,
    "refund": ds_pb2.INGEST_ACTION_REFUND_RECORDED,
    "credit": ds_pb2.INGEST_ACTION_CREDIT_RECORDED,
    "ignored": ds_pb2.INGEST_ACTION_IGNORED,
    "sender_not_allowed": ds_pb2.INGEST_ACTION_SENDER_NOT_ALLOWED,
}


class DsServicer(ds_pb2_grpc.DsServiceServicer):
    def __init__(self, sms: Sms, insights: Insights, settings: DsSettings) -> None:
        self.sms = sms
        self.insights = insights
        self.settings = settings

    @override
    async def ParseSms(self, request: ds_pb2.ParseSmsRequest, context: object) -> ds_pb2.ParseSmsResponse:
        messages = sms_inputs(request.messages, self.settings.max_messages)
        results = await self.sms.parse(current_identity().user_id, messages)
        return ds_pb2.ParseSmsResponse(
            results=[parsed_proto(item.parsed, item.category_id) for item in results]
        )

    @override
    async def IngestSms(self, request: ds_pb2.IngestSmsRequest, context: object) -> ds_pb2.IngestSmsResponse:
        messages = sms_inputs(request.messages, self.settings.max_messages)
        results = await self.sms.ingest(current_identity().user_id, messages)
        return ds_pb2.IngestSmsResponse(results=[ingest_proto(item) for item in results])

    @override
    async def ListSmsReviews(
        self, request: ds_pb2.ListSmsReviewsRequest, context: object
    ) -> ds_pb2.ListSmsReviewsResponse:
        if request.page_token and not is_uuid(request.page_token):
            raise InvalidArgument.of("page_token", "is not a page token this service gave")
        if request.page_size < 0:
            raise InvalidArgument.of("page_size", "must not be negative")
        size = min(request.page_size or self.settings.default_page_size, self.settings.max_page_size)
        reviews = await self.sms.reviews(current_identity().user_id, request.page_token, size + 1)
        token = reviews[size - 1].message_id if len(reviews) > size else ""
        return ds_pb2.ListSmsReviewsResponse(
            reviews=[review_proto(review) for review in reviews[:size]], next_page_token=token
        )

    @override
    async def AcceptSmsReview(
        self, request: ds_pb2.AcceptSmsReviewRequest, context: object
    ) -> ds_pb2.SmsReview:
        review_id = _review_id(request.review_id)
        corrections = corrections_of(request.corrections)
        return review_proto(await self.sms.accept(current_identity().user_id, review_id, corrections))

    @override
    async def RejectSmsReview(
        self, request: ds_pb2.RejectSmsReviewRequest, context: object
    ) -> ds_pb2.SmsReview:
        review_id = _review_id(request.review_id)
        return review_proto(await self.sms.reject(current_identity().user_id, review_id))

    @override
    async def GetInsights(
        self, request: ds_pb2.GetInsightsRequest, context: grpc.aio.ServicerContext
    ) -> ds_pb2.GetInsightsResponse:
        period = request.period or "month"
        if period not in PERIODS:
            raise InvalidArgument.of("period", f"must be one of {', '.join(PERIODS)}")
        written = written_version(context)
        return report_proto(await self.insights.of(current_identity().user_id, period, written))


# ---------------------------------------------------------------- requests


def sms_inputs(messages: list[ds_pb2.SmsMessage], max_messages: int) -> list[SmsInput]:
    if not messages:
        raise InvalidArgument.of("messages", "give at least one message")
    if len(messages) > max_messages:
        raise InvalidArgument.of("messages", f"at most {max_messages} messages per call")
    violations: list[FieldViolation] = []
    inputs = []
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if not message.sender.strip() or len(message.sender) > MAX_SENDER_LENGTH:
            violations.append(FieldViolation(f"{field}.sender", f"must be 1-{MAX_SENDER_LENGTH} characters"))
        if not message.body.strip() or len(message.body) > MAX_BODY_LENGTH:
            violations.append(FieldViolation(f"{field}.body", f"must be 1-{MAX_BODY_LENGTH} characters"))
        received = _rfc3339(message.received_time)
        if received is None:
            violations.append(
                FieldViolation(
                    f"{field}.received_time", "must be an RFC 3339 time such as 2026-11-05T14:22:10+05:30"
                )
            )
            continue
        inputs.append(SmsInput(message.sender, message.body, received))
    if violations:
        raise InvalidArgument(violations)
    return inputs


def _rfc3339(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None and "T" in text.upper() else None


def _review_id(value: str) -> str:
    if not is_uuid(value):
        raise InvalidArgument.of("review_id", "must be a review id")
    return value


def corrections_of(message: ds_pb2.SmsCorrections) -> Corrections:
    violations: list[FieldViolation] = []
    amount = None
    if message.amount:
        try:
            amount = Decimal(message.amount)
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or amount <= 0:
            violations.append(
                FieldViolation("corrections.amount", "must be a positive decimal such as 450.00")
            )
            amount = None
    currency = message.currency.strip().upper()
    if currency and currency not in currencies():
        violations.append(FieldViolation("corrections.currency", "must be an ISO 4217 code such as INR"))
    txn_date = None
    if message.txn_date:
        try:
            txn_date = date.fromisoformat(message.txn_date)
        except ValueError:
            violations.append(FieldViolation("corrections.txn_date", "must be a date such as 2026-11-05"))
    if message.category_id and not is_uuid(message.category_id):
        violations.append(FieldViolation("corrections.category_id", "must be a category id"))
    if len(message.counterparty) > 200:
        violations.append(FieldViolation("corrections.counterparty", "must be at most 200 characters"))
    if violations:
        raise InvalidArgument(violations)
    return Corrections(
        amount, currency, " ".join(message.counterparty.split()), message.category_id, txn_date
    )


# ---------------------------------------------------------------- answers


def _decimal(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def parsed_proto(parsed: ParsedSms, category_id: str = "") -> ds_pb2.ParsedSms:
    channel = ds_pb2.Channel.Value(f"CHANNEL_{parsed.channel}") if parsed.channel else 0
    return ds_pb2.ParsedSms(
        outcome=OUTCOMES[parsed.outcome],
        direction=DIRECTIONS[parsed.direction] if parsed.direction else 0,
        kind=parsed.kind,
        amount=_decimal(parsed.amount),
        currency=parsed.currency,
        foreign_amount=_decimal(parsed.foreign_amount),
        foreign_currency=parsed.foreign_currency,
        counterparty=parsed.counterparty,
        account_mask=parsed.account_mask,
        channel=channel,
        balance=_decimal(parsed.balance),
        available_limit=_decimal(parsed.available_limit),
        reference=parsed.reference,
        txn_date=parsed.txn_date.isoformat() if parsed.txn_date else "",
        confidence=_decimal(parsed.confidence),
        parser=parsed.parser,
        suggested_category_id=category_id,
        reason=parsed.reason,
        bank=parsed.bank,
    )


def ingest_proto(item: Ingested) -> ds_pb2.IngestResult:
    return ds_pb2.IngestResult(
        parsed=parsed_proto(item.parsed, item.category_id),
        action=ACTIONS[item.action],
        expense_id=item.expense_id,
        review_id=item.review_id,
        linked_expense_id=item.linked_expense_id,
    )


def review_proto(message: StoredMessage) -> ds_pb2.SmsReview:
    return ds_pb2.SmsReview(
        review_id=message.message_id,
        message=ds_pb2.SmsMessage(
            sender=message.sender, body=message.body, received_time=rfc3339(message.received_at)
        ),
        parsed=parsed_proto(message.parsed),
        state=message.state,
        expense_id=message.expense_id,
        create_time=rfc3339(message.created_at),
    )


def insight_proto(insight: Insight, text: str) -> ds_pb2.Insight:
    return ds_pb2.Insight(
        type=insight.type,
        currency=insight.currency,
        category_id=insight.category_id,
        merchant=insight.merchant,
        text=text,
        facts=[ds_pb2.InsightFact(name=name, value=value) for name, value in insight.facts.items()],
        low=insight.low,
        high=insight.high,
    )


def report_proto(explained: ExplainedReport) -> ds_pb2.GetInsightsResponse:
    report = explained.report
    return ds_pb2.GetInsightsResponse(
        period=report.period,
        period_start=report.start.isoformat(),
        period_end=report.end.isoformat(),
        insights=[
            insight_proto(insight, text)
            for insight, text in zip(report.insights, explained.texts, strict=True)
        ],
    )
