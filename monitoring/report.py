"""The HTML drift report: one self-contained file rendered from a :class:`DriftResult`.

Readable in a minute: the verdict first, then every feature sorted by drift (test,
statistic, p-value, effect against its threshold, missing rates), then per column an
overlay of the baseline and the window (ECDFs for numbers, frequencies for categories)
drawn as inline SVG. No script, no external resource: a Content-Security-Policy forbids
every fetch, so the file shows the same offline, from S3 or from an email attachment.
"""

from __future__ import annotations

import math
from html import escape

from mlops_core.drift_result import ColumnDrift, DriftResult

REFERENCE_COLOR = "#4c78a8"
CURRENT_COLOR = "#e45756"
MAX_CATEGORIES = 30
WIDTH, HEIGHT, PAD = 420, 170, 34
TIME = "%Y-%m-%d %H:%M:%S"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.verdict{padding:14px 18px;border-radius:8px;margin:12px 0 18px;font-size:16px}
.verdict.drift{background:#fde8e8;border:1px solid #e45756}
.verdict.no_drift{background:#e8f6ec;border:1px solid #54a24b}
.verdict.insufficient_data{background:#fff6e0;border:1px solid #f2a900}
.meta{color:#555} table{border-collapse:collapse;margin-top:6px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e5e5;text-align:left;white-space:nowrap}
th{background:#f6f6f6;font-weight:600} td:last-child{white-space:normal;min-width:16em}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td{background:#fff1f1} .status{font-weight:600}
.status.drift{color:#b42318} .status.ok{color:#2f7d32} .status.too_few_rows{color:#8a6100}
.cols{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid #e5e5e5;border-radius:8px;padding:10px 12px}
.card h3{font-size:14px;margin:0 0 4px} .legend span{display:inline-block;margin-right:12px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-size:10px;fill:#555}
"""


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value != 0 and (abs(value) < 10**-(digits) or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def _verdict(result: DriftResult) -> str:
    if result.verdict == "drift":
        head = "Drift detected"
    elif result.verdict == "no_drift":
        head = "No drift"
    else:
        head = "Not enough data to decide"
    share = "" if result.drift_share is None else f" (drift share {result.drift_share:.0%})"
    return (
        f'<div class="verdict {result.verdict}" id="verdict" data-verdict="{result.verdict}">'
        f"<strong>{head}</strong>{escape(share)}: {escape(result.summary())}</div>"
    )


def _row(col: ColumnDrift) -> str:
    test, effect, missing = col.test, col.effect, col.missing
    missing_cell = (
        "–"
        if missing is None
        else f"{missing.reference_rate:.1%} → {missing.current_rate:.1%}"
        + (" ⚠" if missing.drifted else "")
    )
    cells = [
        f"<td>{escape(col.name)}</td>",
        f"<td>{col.kind}</td>",
        f'<td class="status {col.status}">{col.status.replace("_", " ")}</td>',
        f"<td>{test.name if test else '–'}</td>",
        f'<td class="num">{_num(test.statistic if test else None)}</td>',
        f'<td class="num">{_num(test.p_value if test else None)}</td>',
        f'<td class="num">{_num(test.p_adjusted if test else None)}</td>',
        f"<td>{effect.metric if effect else '–'}</td>",
        f'<td class="num">{_num(effect.value if effect else None)}</td>',
        f'<td class="num">{_num(effect.threshold if effect else None)}</td>',
        f"<td>{missing_cell}</td>",
        f'<td class="num">{col.rows:,}</td>',
        f"<td>{escape(col.reason)}</td>",
    ]
    return f'<tr class="{col.status}" data-feature="{escape(col.name)}">{"".join(cells)}</tr>'


HEADER = (
    "<tr><th>column</th><th>kind</th><th>status</th><th>test</th><th>statistic</th>"
    "<th>p-value</th><th>p (corrected)</th><th>effect</th><th>value</th><th>threshold</th>"
    "<th>missing (baseline → window)</th><th>rows</th><th>why</th></tr>"
)


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ecdf_svg(col: ColumnDrift) -> str:
    dist = col.distribution
    assert dist is not None
    values = [v for v in (*dist.reference, *dist.current) if not math.isnan(v)]
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    x = _scale(lo, hi, PAD, WIDTH - 8)
    y = _scale(0.0, 1.0, HEIGHT - 20, 8)

    def line(quantiles: list[float], color: str, label: str) -> str:
        pts = []
        for q, p in zip(quantiles, dist.probabilities, strict=True):
            if not math.isnan(q):
                pts.append(f"{x(q):.1f},{y(p):.1f}")
        return (
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(pts)}">'
            f"<title>{label}</title></polyline>"
        )

    axis = (
        f'<line x1="{PAD}" y1="{HEIGHT - 20}" x2="{WIDTH - 8}" y2="{HEIGHT - 20}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{HEIGHT - 20}" stroke="#999"/>'
        f'<text x="{PAD}" y="{HEIGHT - 6}">{escape(_num(lo))}</text>'
        f'<text x="{WIDTH - 8}" y="{HEIGHT - 6}" text-anchor="end">{escape(_num(hi))}</text>'
        f'<text x="{PAD - 4}" y="12" text-anchor="end">1</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - 20}" text-anchor="end">0</text>'
    )
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="ECDF of {escape(col.name)}">{axis}'
        f"{line(dist.reference, REFERENCE_COLOR, 'baseline')}"
        f"{line(dist.current, CURRENT_COLOR, 'window')}</svg>"
    )


def _bars_svg(col: ColumnDrift) -> str:
    dist = col.distribution
    assert dist is not None
    order = sorted(
        range(len(dist.categories)),
        key=lambda i: -max(dist.reference[i], dist.current[i]),
    )[:MAX_CATEGORIES]
    top = max([dist.reference[i] for i in order] + [dist.current[i] for i in order] + [1e-9])
    slot = (WIDTH - PAD - 8) / max(len(order), 1)
    y = _scale(0.0, top, HEIGHT - 20, 8)
    parts = [f'<line x1="{PAD}" y1="{HEIGHT - 20}" x2="{WIDTH - 8}" y2="{HEIGHT - 20}" '
             'stroke="#999"/>']  # fmt: skip
    for n, i in enumerate(order):
        x0 = PAD + n * slot
        bar = max(slot / 2 - 2, 1)
        for k, (value, color) in enumerate(
            ((dist.reference[i], REFERENCE_COLOR), (dist.current[i], CURRENT_COLOR))
        ):
            parts.append(
                f'<rect x="{x0 + 1 + k * bar:.1f}" y="{y(value):.1f}" width="{bar:.1f}" '
                f'height="{HEIGHT - 20 - y(value):.1f}" fill="{color}">'
                f"<title>{escape(dist.categories[i])}: {value:.1%}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + slot / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
            f"{escape(dist.categories[i][:10])}</text>"
        )
    return (
        f'<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="frequencies of {escape(col.name)}">{"".join(parts)}</svg>'
    )


def _card(col: ColumnDrift) -> str:
    if col.distribution is None:
        body = f"<p>{escape(col.reason or 'not tested')}</p>"
    elif col.distribution.kind == "numeric":
        body = _ecdf_svg(col)
    else:
        body = _bars_svg(col)
    return (
        f'<div class="card" data-feature="{escape(col.name)}"><h3>{escape(col.name)} '
        f'<span class="status {col.status}">{col.status.replace("_", " ")}</span></h3>'
        f"{body}</div>"
    )


def render(result: DriftResult) -> str:
    cfg = result.config
    title = f"Drift: {result.project}/{result.env} {result.version}"
    thresholds = ", ".join(f"{k} {v:g}" for k, v in sorted(cfg.thresholds.items()))
    rows = "".join(_row(c) for c in result.features)
    columns = [*result.features, *([result.prediction] if result.prediction else [])]
    pred_table = (
        f'<h2>Predictions</h2><table id="prediction"><thead>{HEADER}</thead>'
        f"<tbody>{_row(result.prediction)}</tbody></table>"
        if result.prediction is not None
        else ""
    )
    skipped = (
        f"<p class='meta'>{len(result.skipped_files)} capture files could not be read and were "
        "left out (see drift.json).</p>"
        if result.skipped_files
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<div class="meta">window {result.window_start:{TIME}}Z – {result.window_end:{TIME}}Z ·
{result.rows:,} captured rows in {result.files} files · computed {result.computed_at:{TIME}}Z</div>
{_verdict(result)}
<div class="meta">A column drifted when its corrected p-value ({cfg.correction}) is below
{cfg.alpha:g} and its effect reaches the threshold ({escape(thresholds)}); the dataset drifted
when at least {cfg.drift_share:.0%} of the tested features did. Columns with fewer than
{cfg.min_rows} values in the window are not tested.</div>
{skipped}
<h2>Features, most drifted first</h2>
<table id="features"><thead>{HEADER}</thead><tbody>{rows}</tbody></table>
{pred_table}
<h2>Distributions</h2>
<div class="legend">
<span><i class="swatch" style="background:{REFERENCE_COLOR}"></i>baseline (training)</span>
<span><i class="swatch" style="background:{CURRENT_COLOR}"></i>window (captured)</span>
<span class="meta">numbers: cumulative distribution; categories: frequency</span></div>
<div class="cols">{"".join(_card(c) for c in columns)}</div>
</body></html>
"""
