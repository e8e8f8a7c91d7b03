"""Small builders shared by the dashboards: queries, panels and template variables."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# A range mapping from this value up shows "not draining" instead of a huge duration.
NEVER_SECONDS = 7 * 24 * 3600


def query(expr: str, legend: str = "", ref_id: str = "A") -> prom.Dataquery:
    """A range query, as time series panels want it."""
    return prom.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref_id).range()


def instant_table(expr: str, ref_id: str = "A") -> prom.Dataquery:
    """An instant query formatted as a table."""
    return prom.Dataquery().expr(expr).ref_id(ref_id).instant().format(PromQueryFormat.TABLE)


def heatmap_query(expr: str, ref_id: str = "A") -> prom.Dataquery:
    """A bucket query that Grafana turns into heatmap cells (it de-accumulates `le`)."""
    return (
        prom.Dataquery()
        .expr(expr)
        .legend_format("{{le}}")
        .ref_id(ref_id)
        .range()
        .format(PromQueryFormat.HEATMAP)
    )


def series(
    title: str, description: str, unit: str, *targets: prom.Dataquery, width: int = 8
) -> timeseries.Panel:
    """A time series panel."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .line_width(1)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def big_number(
    title: str, description: str, unit: str, target: prom.Dataquery, width: int = 6
) -> stat.Panel:
    """A stat panel showing the latest value."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(4)
        .with_target(target)
    )


def top_table(
    title: str, description: str, unit: str, target: prom.Dataquery, value_name: str
) -> table.Panel:
    """A table of an instant query, without the time column."""
    organize = model.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": {"Time": True}, "renameByName": {"Value": value_name}},
    )
    return (
        table.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
        .with_target(target)
        .with_transformation(organize)
    )


def merged_table(title: str, description: str, columns: dict[str, str]) -> table.Panel:
    """One row per series label set, one column per instant query (`columns`: name -> expr).

    Each query is its own target, merged on their common labels: an `or` chain of series with
    the same labels would keep only the first (`or` ignores the metric name).
    """
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    rename = {f"Value #{ref}": name for ref, name in zip(refs, columns, strict=True)}
    organize = model.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": {"Time": True}, "renameByName": rename},
    )
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .datasource(DATASOURCE)
        .span(12)
        .height(8)
    )
    for ref, expr in zip(refs, columns.values(), strict=True):
        panel = panel.with_target(instant_table(expr, ref))
    merge = model.DataTransformerConfig(id_val="merge", options={})
    return panel.with_transformation(merge).with_transformation(organize)


def age_heatmap(title: str, description: str, target: prom.Dataquery) -> heatmap.Panel:
    """A heatmap of pre-bucketed ages (the exporter's gauge histogram)."""
    return (
        heatmap.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .with_target(target)
    )


def text_mapping(value: str, text: str, color: str) -> model.ValueMap:
    """Show `text` in `color` for one exact value."""
    return model.ValueMap(options={value: model.ValueMappingResult(text=text, color=color)})


def range_mapping(low: float, high: float, text: str) -> model.RangeMap:
    """Show `text` for values in [low, high]."""
    return model.RangeMap(
        options=model.DashboardRangeMapOptions(
            from_val=low, to=high, result=model.ValueMappingResult(text=text)
        )
    )


def dashed(ref_id: str) -> dict[str, Any]:
    """Arguments for `override_by_query` that draw a query's lines dashed (thresholds)."""
    return {
        "query_ref_id": ref_id,
        "properties": [
            model.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            )
        ],
    }


def datasource_variable() -> dash.DatasourceVariable:
    """The Prometheus data source picker."""
    return dash.DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, expr: str) -> dash.QueryVariable:
    """A multi-value label filter; "All" is `.*` so queries can always use `=~`."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .query(expr)
        .datasource(DATASOURCE)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def new_dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    """A dashboard with the settings both share."""
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["alvaria", "emailqueue"])
        .editable()
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
