"""`ReportData` -> one self-contained HTML page (inline CSS, SVG plots, a little vanilla JS).

The page also carries every number it shows as JSON (`<script id="report-data">`) and as
`data-value` attributes, so a test (or a script) can read them back without parsing the text.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cifar_ops import __version__
from cifar_ops.formatting import missing, pct
from cifar_ops.report import plots
from cifar_ops.report.model import ReportData, RunReport
from cifar_ops.report.thumbnails import thumbnail_data_uri

MAX_HEATMAP_PAIRS = 15  # pre-rendered axis pairs a reader can switch between in the page


def render_html(data: ReportData) -> str:
    """The whole page as a string."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        data=data,
        runs=[_run_view(run) for run in data.runs],
        comparison=_comparison_view(data),
        search=_search_view(data),
        payload=_script_json(_payload(data)),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
    )


def write_report(data: ReportData, output: Path) -> Path:
    """Render, then write atomically: a failed render never leaves a half-written file behind."""
    html = render_html(data)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a report is for others to read
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output


# --- view models: what the template loops over -------------------------------------------------


def _run_view(run: RunReport) -> dict[str, Any]:
    mistakes = [
        {**row, "thumbnail": thumbnail_data_uri(row.get("image_ref"))}
        for row in _records(run.mistakes)
    ]
    return {
        "run": run,
        "curves_svg": plots.learning_curves(run.epochs) if len(run.epochs) else None,
        "class_metrics": _records(run.class_metrics),
        "class_svg": plots.class_metrics_bars(run.class_metrics)
        if len(run.class_metrics)
        else None,
        "confusion_svg": plots.confusion_heatmap(run.confusion) if len(run.confusion) else None,
        "calibration_svg": (
            plots.reliability_diagram(run.calibration) if len(run.calibration) else None
        ),
        "mistakes": mistakes,
    }


def _comparison_view(data: ReportData) -> dict[str, Any] | None:
    if data.comparison is None or len(data.comparison) < 2:
        return None
    return {"rows": _records(data.comparison), "svg": plots.comparison_bars(data.comparison)}


def _search_view(data: ReportData) -> dict[str, Any] | None:
    search = data.search
    if search is None:
        return None
    heatmaps = []
    if search.heatmap_axes is not None:
        pairs = [search.heatmap_axes] + [
            pair
            for pair in itertools.combinations(search.varying, 2)
            if set(pair) != set(search.heatmap_axes)
        ]
        for x, y in pairs[:MAX_HEATMAP_PAIRS]:
            pivot = plots.search_pivot(search.leaderboard, x, y)
            heatmaps.append(
                {"key": f"{x}|{y}", "x": x, "y": y, "svg": plots.search_heatmap(pivot, x, y)}
            )
    curves = search.curves
    spent, full = search.epochs_spent, search.epochs_full
    return {
        "rows": _records(search.leaderboard),
        "parameters": search.parameters,
        "heatmaps": heatmaps,
        "curves_svg": plots.trial_curves(curves) if curves is not None and len(curves) else None,
        "epochs_spent": spent,
        "epochs_full": full,
        "epochs_share": spent / full if spent is not None and full else None,
        "epochs_svg": plots.epochs_against_grid(spent, full)
        if spent is not None and full
        else None,
        "importances_svg": plots.importance_bars(search.importances)
        if search.importances
        else None,
    }


def _payload(data: ReportData) -> dict[str, Any]:
    """Every number shown, straight from the frames the loader read."""
    search = data.search
    return {
        "title": data.title,
        "runs": [
            {
                "run_id": run.run_id,
                "kpis": vars(run.kpis),
                "epochs": _records(run.epochs),
                "class_metrics": _records(run.class_metrics),
                "confusion": {
                    "classes": [str(c) for c in run.confusion.columns],
                    "counts": run.confusion.to_numpy().tolist(),
                },
                "calibration": _records(run.calibration),
                "mistakes": _records(run.mistakes),
            }
            for run in data.runs
        ],
        "comparison": None if data.comparison is None else _records(data.comparison),
        "search": None
        if search is None
        else {
            "leaderboard": _records(search.leaderboard),
            "parameters": search.parameters,
            "heatmap_axes": search.heatmap_axes,
            "epochs_spent": search.epochs_spent,
            "epochs_full": search.epochs_full,
            "importances": search.importances,
        },
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    """JSON-safe scalars: NaN/NaT become None, numpy and pandas scalars become Python ones."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, dict)):
        return value
    if pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return value


def _script_json(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, default=str, allow_nan=False, sort_keys=True)
    return text.replace("<", "\\u003c")  # no `</script>` or `<!--` can end the script block


# --- template filters ----------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cifar_ops.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, gap=_gap, params=_params, duration=_duration, num=_num, attr=_attr)
    return env


def _pct(value: Any, digits: int = 2) -> str:
    return pct(value, digits, absent="n/a")


def _gap(value: Any) -> str:
    """A signed percentage-point difference, as the comparison table shows gaps."""
    return "n/a" if missing(value) else f"{float(value) * 100:+.2f} pp"


def _params(value: Any) -> str:
    if missing(value):
        return "n/a"
    count = int(value)
    for divisor, suffix in ((1_000_000, "M"), (1_000, "K")):
        if count >= divisor:
            return f"{count / divisor:.3g}{suffix}"
    return str(count)


def _duration(value: Any) -> str:
    if missing(value):
        return "n/a"
    seconds = float(value)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m" if hours else f"{minutes} m {secs:02d} s"


def _num(value: Any, digits: int = 4) -> str:
    if missing(value):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{float(value):.{digits}f}"


def _attr(value: Any) -> str:
    """A machine-readable `data-value`: repr-exact floats, empty for a missing value."""
    if missing(value):
        return ""
    return json.dumps(_plain(value))
