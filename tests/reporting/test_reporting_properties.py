"""Property: for random histories of creates, updates, deletes and category
deletions (with stale redeliveries mixed in), across time zones, week starts,
month and year boundaries and currencies with 0, 2 and 3 decimals, every report
equals the direct computation over the final expense list, exactly. A second
batch of changes after the first reads checks that cached reports (Redis
backend) are invalidated, not served stale."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import given
from hypothesis import strategies as st

from expense.reporting.v1 import reporting_pb2
from services.kit.domain.errors import NotFound
from services.kit.domain.ids import new_id
from services.user.client import Preferences
from tests.reporting import reference
from tests.reporting.harness import Reporting, profile_event
from tests.reporting.histories import CURRENCIES, DAYS, TREE, history, history_settings
from tests.reporting.reference import LedgerModel, Viewpoint


async def _check_reports(reporting: Reporting, data: st.DataObject, model: LedgerModel) -> None:
    user = model.user_id
    servicer = reporting.servicer
    zone = data.draw(st.sampled_from(TIME_ZONES), "time_zone")
    week_start = data.draw(st.sampled_from(WEEK_STARTS), "week_start")
    default_currency = data.draw(st.sampled_from(CURRENCIES), "default_currency")
    await reporting.apply(profile_event(user, Preferences(default_currency, zone, week_start, "en")))
    now = datetime.combine(
        data.draw(st.sampled_from(DAYS), "now_day"), time(data.draw(st.integers(0, 23), "now_hour")), UTC
    )
    reporting.clock.now = now
    view = Viewpoint(now.astimezone(ZoneInfo(zone)).date(), week_start, default_currency)

    for _ in range(2):
        kind = data.draw(st.sampled_from(["week", "month", "year"]), "period")
        day = data.draw(st.one_of(st.none(), st.sampled_from(DAYS)), "date")
        request = reporting_pb2.GetSummaryRequest(period=kind, date=day.isoformat() if day else "")
        got = await reporting.call(user, servicer.GetSummary, request)
        assert MessageToDict(got) == MessageToDict(reference.summary(model, kind, day or view.today, view))

        category_id = data.draw(st.sampled_from([c.category_id for c in TREE]), "report_category")
        request = reporting_pb2.GetCategoryReportRequest(
            category_id=category_id, period=kind, date=day.isoformat() if day else ""
        )
        if model.categories[category_id].deleted:
            with pytest.raises(NotFound):
                await reporting.call(user, servicer.GetCategoryReport, request)
        else:
            got = await reporting.call(user, servicer.GetCategoryReport, request)
            expected = reference.category_report(model, category_id, kind, day or view.today, view)
            assert MessageToDict(got) == MessageToDict(expected)

        count = data.draw(st.integers(1, 8), "count")
        got = await reporting.call(
            user, servicer.GetTrend, reporting_pb2.GetTrendRequest(period=kind, count=count)
        )
        assert MessageToDict(got) == MessageToDict(reference.trend(model, kind, count, view))

        request = reporting_pb2.ExportExpensesRequest(period=kind, date=day.isoformat() if day else "")
        got = await reporting.call(user, servicer.ExportExpenses, request)
        text, rows = reference.export_csv(model, kind, day or view.today, week_start)
        assert (got.csv, got.row_count, got.content_type) == (text, rows, "text/csv")


TIME_ZONES = ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata", "America/St_Johns"]
WEEK_STARTS = ["monday", "sunday", "saturday"]


@history_settings(35)
@given(data=st.data())
async def test_every_report_equals_the_direct_computation(reporting: Reporting, data: st.DataObject) -> None:
    model = LedgerModel(new_id())
    events = [model.add_category(copy.copy(category)) for category in TREE]
    events += history(data, model, data.draw(st.integers(1, 18), "steps"))
    await reporting.apply(*events)
    # Late copies of earlier expense events (redeliveries after newer ones) change nothing.
    expense_events = [e for e in events if e.type.startswith("expense.")]
    if expense_events:
        await reporting.apply(*data.draw(st.lists(st.sampled_from(expense_events), max_size=4), "stale"))
    await _check_reports(reporting, data, model)

    await reporting.apply(*history(data, model, data.draw(st.integers(1, 6), "more_steps")))
    await _check_reports(reporting, data, model)
