"""Reports a person reads: machine-readable JSON and a self-contained HTML page per date."""

from __future__ import annotations

import html
from typing import Any

from recpipe.storage import Store

STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em}td,th{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}.ok{color:green}.bad{color:#b00;font-weight:bold}"""


def write_quality(store: Store, dt: str, summary: dict[str, Any], gx_results: dict[str, dict]) -> str:
    """``reports/quality/dt=D/{result.json,index.html}``; returns the page's key."""
    prefix = f"reports/quality/dt={dt}"
    store.put_json(f"{prefix}/result.json", {"summary": summary, "great_expectations": gx_results})
    verdict = "passed" if summary.get("passed") else "FAILED"
    problems = "".join(f"<li class=bad>{html.escape(p)}</li>" for p in summary.get("problems", []))
    facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in summary.items() if k not in ("problems", "passed"))
    tables = "".join(_gx_table(name, result) for name, result in gx_results.items())
    page = f"""<!doctype html><meta charset=utf-8><title>Quality {dt}: {verdict}</title><style>{STYLE}</style>
<h1>Raw data dt={html.escape(dt)}: <span class={'ok' if summary.get('passed') else 'bad'}>{verdict}</span></h1>
<ul>{problems}</ul><table>{facts}</table>{tables}"""
    store.put_bytes(f"{prefix}/index.html", page.encode())
    return f"{prefix}/index.html"


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
