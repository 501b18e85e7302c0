"""Reports a person reads: machine-readable JSON and a self-contained HTML page per date."""

from __future__ import annotations

import html
from typing import Any

from recpipe.io import layout
from recpipe.io.partitions import Store

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}.ok{color:green}.bad{color:#b00;font-weight:bold}.warn{color:#a60}"""


def write_quality(store: Store, dt: str, summary: dict[str, Any], gx_results: dict[str, dict],
                  history: list[dict[str, Any]] | None = None) -> str:
    """``reports/quality/dt=D/{result.json,index.html}``; the page charts each drift measure
    over ``history`` (earlier summaries, oldest first) and D. Returns the page's key."""
    store.put_json(layout.quality_report(dt, "result.json"), {"summary": summary, "great_expectations": gx_results})
    verdict = "passed" if summary.get("passed") else "FAILED"
    problems = "".join(f"<li class=bad>{html.escape(p)}</li>" for p in summary.get("problems", []))
    problems += "".join(f"<li class=warn>warning: {html.escape(w)}</li>" for w in summary.get("warnings", []))
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in summary.items() if k not in ("problems", "warnings", "passed", "drift"))
    tables = "".join(_gx_table(name, result) for name, result in gx_results.items())
    page = f"""<!doctype html><meta charset=utf-8><title>Quality {dt}: {verdict}</title><style>{STYLE}
svg{{margin:4px 12px 12px 0}}.charts{{display:flex;flex-wrap:wrap}}</style>
<h1>Raw data dt={html.escape(dt)}: <span class={'ok' if summary.get('passed') else 'bad'}>{verdict}</span></h1>
<ul>{problems}</ul><table>{facts}</table>{_drift_section(summary, history or [])}{tables}"""
    store.put_bytes(layout.quality_report(dt), page.encode())
    return layout.quality_report(dt)


def recent_reports(store: Store, reports: str, name: str, dt: str, days: int) -> list[Any]:
    """The JSON objects ``<reports>/dt=*/<name>`` of up to ``days`` dates before ``dt``, oldest
    first; only those are read (a year of dates is not 365 GETs a run)."""
    keys = store.list_keys(layout.dates_prefix(reports))
    dates = sorted(d for d, k in zip(map(layout.date_of, keys), keys) if d < dt
                   and k == f"{layout.partition(reports, d)}/{name}")[-days:]
    return [store.get_json(f"{layout.partition(reports, d)}/{name}") for d in dates]


def quality_history(store: Store, dt: str, days: int = 30) -> list[dict[str, Any]]:
    """The quality summaries (``reports/quality/dt=*/result.json``) of up to ``days`` dates before ``dt``."""
    return [r["summary"] for r in recent_reports(store, layout.QUALITY_REPORTS, "result.json", dt, days)]


_STATUS_CLASS = {"fail": "bad", "warn": "warn", "ok": "ok"}


def _drift_section(summary: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """A table of today's drift measures and, per measure, its judged statistic over the dates
    with the warn and fail thresholds."""
    drift = summary.get("drift")
    if not drift:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td class={_STATUS_CLASS.get(m['status'], '')}>"
        f"{html.escape(m['status'])}</td><td>{m.get('statistic')}</td><td>{m.get('value')}</td>"
        f"<td>{m.get('reference', m.get('baseline'))}</td><td>{m['warn']:g} / {m['fail']:g}</td></tr>"
        for name, m in drift["measures"].items())
    runs = [{"dt": s["dt"], "metrics": {role: {n: m.get("statistic") if role == "drift" else m.get(role)
                                               for n, m in s["drift"]["measures"].items()}
                                        for role in ("drift", "warn", "fail")}}
            for s in [*history, summary] if s.get("drift")]
    charts = "".join(_history_chart(name, runs, gated=False, roles=("drift", "warn", "fail"))
                     for name in drift["measures"])
    note = f"<p>{html.escape(drift['note'])}</p>" if drift.get("note") else ""
    return (f"<h2>Drift against the previous days ({len(drift['days'])} compared)</h2>{note}<table><tr><th>measure</th>"
            f"<th>status</th><th>judged</th><th>today</th><th>reference</th><th>warn / fail</th></tr>{rows}</table>"
            f"<div class=charts>{charts}</div>")


def _gx_table(name: str, result: dict) -> str:
    rows = []
    for r in result.get("results", []):
        cfg = r["expectation_config"]
        column = cfg["kwargs"].get("column") or cfg["kwargs"].get("column_list") or ""
        observed = {k: v for k, v in r["result"].items()
                    if k in ("observed_value", "unexpected_count", "unexpected_percent", "partial_unexpected_list")}
        status = "<span class=ok>pass</span>" if r["success"] else "<span class=bad>FAIL</span>"
        rows.append(f"<tr><td>{html.escape(cfg['type'])}</td><td>{html.escape(str(column))}</td>"
                    f"<td>{status}</td><td>{html.escape(str(observed))[:400]}</td></tr>")
    return (f"<h2>raw/{html.escape(name)}: Great Expectations</h2><table><tr><th>expectation</th><th>column</th>"
            f"<th>result</th><th>observed</th></tr>{''.join(rows)}</table>")


COLORS = {"candidate": "#2a7", "serving": "#27c", "popularity": "#999", "recent": "#c80", "threshold": "#c33",
          "all": "#000", "personalized": "#2a7", "repeat": "#c80", "fallback": "#999",
          "drift": "#27c", "warn": "#c80", "fail": "#c33"}

OLD_ROLES = {"serving": "champion"}


def write_evaluation(store: Store, decision: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """``reports/evaluation/dt=D/{metrics.json,index.html}``: this run's metrics side by side,
    and each metric over the dates in ``history`` (earlier decisions, oldest first) with the
    gate's threshold drawn in. Returns the page's key."""
    dt = decision["dt"]
    store.put_json(layout.evaluation_report(dt, "metrics.json"), decision)
    names = [n for n in decision["metrics"]["candidate"] if "@" in n]
    verdict = "PASSED" if decision["passed"] else "REJECTED"
    models = "".join(f"<li><b style='color:{COLORS.get(r, '#000')}'>{html.escape(r)}</b>: "
                     f"{html.escape(m['model'])} {html.escape(m['version'])}</li>" for r, m in decision["metrics"].items())
    runs = history + [decision]
    charts = "".join(_history_chart(n, runs, gated=n == f"ndcg@{decision['k']}") for n in names)
    realised = feedback_history(store, dt)
    if realised:
        charts += "".join(_feedback_chart(truth, realised) for truth in ("purchase", "click"))
    page = f"""<!doctype html><meta charset=utf-8><title>Evaluation {dt}: {verdict}</title><style>{STYLE}
svg{{margin:4px 12px 12px 0}}.charts{{display:flex;flex-wrap:wrap}}</style>
<h1>Evaluation dt={html.escape(dt)}: candidate <span class={'ok' if decision['passed'] else 'bad'}>{verdict}</span></h1>
<ul>{''.join(f'<li>{html.escape(r)}</li>' for r in decision['reasons'])}</ul>
<h2>This run</h2><ul>{models}</ul>{_bars(decision, names)}
<h2>History ({len(runs)} dates; realised: how each published table did the next day)</h2>
<div class=charts>{charts}</div>"""
    store.put_bytes(layout.evaluation_report(dt), page.encode())
    return layout.evaluation_report(dt)


def feedback_history(store: Store, dt: str, days: int = 60) -> list[dict[str, Any]]:
    """The realised feedback (``reports/feedback/dt=*/metrics.json``) of up to ``days`` dates before ``dt``."""
    return recent_reports(store, layout.FEEDBACK_REPORTS, "metrics.json", dt, days)


def _feedback_chart(truth: str, realised: list[dict[str, Any]]) -> str:
    """Realised hit rate of each published table (at its own top_k) on the next day's ``truth``,
    overall and per strategy, over dates."""
    runs = [{"dt": r["dt"], "metrics": {s: {"v": v[f"hit_rate@{r['k']}"]} for s, v in
                                        {"all": r[truth]["all"], **r[truth]["strategy"]}.items()}} for r in realised]
    return _history_chart("v", runs, gated=False, roles=("all", "personalized", "repeat", "fallback"),
                          title=f"realised {truth} hit rate (each table's top_k)")


def _bars(decision: dict[str, Any], names: list[str]) -> str:
    """Grouped horizontal bars: one group per metric (each on its own scale: accuracy, diversity,
    novelty in bits…), one bar per contender (0 without the metric)."""
    roles = list(decision["metrics"])
    row_h, left, width = 12, 110, 360
    height = len(names) * (len(roles) * row_h + 10)
    parts, y = [], 0
    for n in names:
        parts.append(f"<text x=0 y={y + row_h * len(roles) / 2 + 4} font-size=12>{html.escape(n)}</text>")
        top = max([decision["metrics"][r].get(n, 0.0) for r in roles] + [1e-9])
        for r in roles:
            v = decision["metrics"][r].get(n, 0.0)
            w = width * max(v, 0.0) / top
            parts.append(f"<rect x={left} y={y} width={w:.1f} height={row_h - 2} fill='{COLORS.get(r, '#555')}'>"
                         f"<title>{html.escape(r)} {v:.4f}</title></rect>"
                         f"<text x={left + w + 4:.1f} y={y + row_h - 3} font-size=10>{v:.4f}</text>")
            y += row_h
        y += 10
    return f"<svg width={left + width + 60} height={height} role=img>{''.join(parts)}</svg>"


def _history_chart(name: str, runs: list[dict[str, Any]], gated: bool,
                   roles: tuple[str, ...] = ("candidate", "serving", "popularity", "recent"), title: str = "") -> str:
    """One metric over dates: a line per role, plus the gate's bar when the metric is gated.
    (Reports written before the serving model was judged across families call it ``champion``.)"""
    w, h, pad = 320, 150, 30
    series = {r: [(run["metrics"].get(r) or run["metrics"].get(OLD_ROLES.get(r), {})).get(name) for run in runs]
              for r in roles}
    if gated:
        series["threshold"] = [run.get("thresholds", {}).get("min_" + name) for run in runs]
    values = [v for s in series.values() for v in s if v is not None] or [0.0]
    lo, hi = min(values + [0.0]), max(values) or 1.0
    n = len(runs)

    def xy(i: int, v: float) -> str:
        x = pad + (w - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        return f"{x:.1f},{h - pad - (h - 2 * pad) * (v - lo) / ((hi - lo) or 1):.1f}"

    lines = []
    for role, vals in series.items():
        pts = [xy(i, v) for i, v in enumerate(vals) if v is not None]
        dash = " stroke-dasharray='4 3'" if role == "threshold" else ""
        if pts:
            lines.append(f"<polyline fill=none stroke='{COLORS[role]}' stroke-width=2{dash} points='{' '.join(pts)}'>"
                         f"<title>{role}</title></polyline>")
            lines += [f"<circle cx={p.split(',')[0]} cy={p.split(',')[1]} r=2.5 fill='{COLORS[role]}'/>" for p in pts]
    axis = (f"<text x={pad} y={h - 8} font-size=10>{html.escape(runs[0]['dt'])}</text>"
            f"<text x={w - pad} y={h - 8} font-size=10 text-anchor=end>{html.escape(runs[-1]['dt'])}</text>"
            f"<text x=2 y={pad - 4} font-size=10>{hi:.3f}</text><text x=2 y={h - pad} font-size=10>{lo:.3f}</text>")
    label = title or name
    title = f"<text x={w / 2} y=14 font-size=12 text-anchor=middle>{html.escape(label)}{' (gated)' if gated else ''}</text>"
    return f"<svg width={w} height={h} role=img>{title}{axis}{''.join(lines)}</svg>"
