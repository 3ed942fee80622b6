"""The monitor report: one self-contained HTML page a person opens to see the drift and the freshness.

:func:`write_report` renders a :class:`~feature_store.monitor.MonitorRun` and the monitor
history into one file: inline CSS, inline SVG plots drawn by matplotlib (its Agg backend,
text kept as text), a few lines of inline JavaScript to filter the features. Nothing is
fetched from anywhere, so it works offline, from a mail attachment or behind any proxy.

Per feature: the offline sample against the values served in the last hour (a histogram
overlay of both, as densities, for numbers; side-by-side bars of category shares for strings
and booleans), with its level, statistics and notes. Per view: the offline lag and the
online write lag p95 over the runs in the history, against the freshness SLA.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pragma: no cover
    from feature_store.monitor import FeatureResult, MonitorRun, ViewResult

__all__ = ["render_report", "write_report"]

OFFLINE_COLOR, ONLINE_COLOR, SLA_COLOR = "#4c72b0", "#dd8452", "#c44e52"
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:13px} table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
.lvl{font-weight:600;padding:1px 6px;border-radius:3px}
.alert{background:#fbe3e4;color:#a1141b} .warn{background:#fff3cd;color:#7a5b00} .ok{background:#e6f4ea;color:#17612e}
.insufficient{background:#e3f2fd;color:#0b4f8a} .notchecked{background:#f1f1f1;color:#666}
.cards{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #ddd;border-radius:6px;padding:8px;width:360px}
.card h3{font-size:14px;margin:0 0 4px;word-break:break-all} .card p{font-size:12px;margin:2px 0;color:#444}
.card svg{width:100%;height:auto} .alerts li{color:#a1141b} #filter{font-size:14px;padding:4px;width:280px}
"""
# Filters the feature cards by name and, optionally, to those not ok. No error can escape it: it
# only reads the two inputs and toggles `hidden` on elements the page itself rendered.
_JS = """
(function () {
  var box = document.getElementById("filter"), only = document.getElementById("only-bad");
  function apply() {
    var text = box.value.toLowerCase(), cards = document.querySelectorAll(".card[data-ref]");
    for (var i = 0; i < cards.length; i++) {
      var c = cards[i], bad = c.getAttribute("data-level") !== "ok";
      c.hidden = c.getAttribute("data-ref").indexOf(text) < 0 || (only.checked && !bad);
    }
  }
  box.addEventListener("input", apply);
  only.addEventListener("change", apply);
})();
"""


def _level_class(level: str) -> str:
    return {"insufficient data": "insufficient", "not checked": "notchecked"}.get(level, level)


def _badge(level: str) -> str:
    return f'<span class="lvl {_level_class(level)}">{html.escape(level)}</span>'


def _svg(fig: Any) -> str:
    """The figure as inline SVG: no XML prolog, DOCTYPE or metadata (they name external URLs)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return text


def _figure(width: float = 4.2, height: float = 2.4) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot's first use
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "fstore", "font.size": 8})
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _distribution(result: "FeatureResult", offline: np.ndarray, online: np.ndarray) -> str:
    fig, ax = _figure()
    if result.method == "psi":  # categories: shares side by side, the most common offline first
        cats = np.unique(np.concatenate([offline, online]).astype(str))
        order = sorted(cats, key=lambda c: -(offline == c).sum())[:12]
        x = np.arange(len(order))
        off = [(offline == c).mean() if len(offline) else 0 for c in order]
        on = [(online == c).mean() if len(online) else 0 for c in order]
        ax.bar(x - 0.2, off, 0.4, color=OFFLINE_COLOR, label=f"offline (n={len(offline)})")
        ax.bar(x + 0.2, on, 0.4, color=ONLINE_COLOR, label=f"online (n={len(online)})")
        ax.set_xticks(x, order, rotation=30, ha="right")
        ax.set_ylabel("share")
    else:
        both = np.concatenate([offline, online])
        lo, hi = (np.quantile(both, [0.005, 0.995]) if both.size else (0.0, 1.0))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        for values, color, name in ((offline, OFFLINE_COLOR, "offline"), (online, ONLINE_COLOR, "online")):
            if values.size:
                ax.hist(np.clip(values, lo, hi), bins=bins, density=True, alpha=0.55, color=color,
                        label=f"{name} (n={values.size})")
        ax.set_ylabel("density")
    ax.legend(frameon=False)
    return _svg(fig)


def _freshness(view: "ViewResult", history: pa.Table) -> str | None:
    rows = history.filter(pc.equal(history["view"], view.view)) if history.num_rows else history
    series = {}
    for metric, label in (("offline_lag_s", "offline lag"), ("write_lag_p95_s", "write lag p95")):
        part = rows.filter(pc.equal(rows["metric"], metric)) if rows.num_rows else rows
        part = part.filter(pc.is_valid(part["value"])) if part.num_rows else part
        if part.num_rows:
            series[label] = (part["as_of"].to_pylist(), np.asarray(part["value"].to_pylist()) / 3600)
    if not series:
        return None
    fig, ax = _figure(5.6, 2.4)
    for (label, (when, hours)), color in zip(series.items(), (OFFLINE_COLOR, ONLINE_COLOR), strict=False):
        ax.plot(when, hours, marker="o", color=color, label=label)
    if view.freshness_sla is not None:
        sla = view.freshness_sla.total_seconds() / 3600
        ax.axhline(sla, color=SLA_COLOR, linestyle="--", linewidth=1, label=f"SLA ({sla:g}h)")
        if view.online:
            ax.axhline(sla * view.lag_factor, color=SLA_COLOR, linestyle=":", linewidth=1,
                       label=f"write lag alert ({view.lag_factor:g}x)")
    ax.set_ylabel("hours")
    ax.legend(frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def render_report(run: "MonitorRun", history: pa.Table | None = None) -> str:
    """The report of ``run`` as one HTML document (``history``: the monitor history, for freshness over time)."""
    from feature_store.monitor import format_lag, history_schema

    history = history if history is not None else history_schema().empty_table()
    e = html.escape
    verdict = "alert" if not run.ok else "ok"
    parts = [
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>fstore monitor {run.now:%Y-%m-%d %H:%M}</title><style>{_CSS}</style></head><body>",
        f"<h1>Feature monitors {_badge(verdict)}</h1>",
        f"<p class=\"meta\">As of {run.now:%Y-%m-%d %H:%M:%S} UTC (run at {run.run_at:%Y-%m-%d %H:%M:%S}); offline "
        f"sample {run.offline_window[0]:%Y-%m-%d} to {run.offline_window[1]:%Y-%m-%d} (excluded), serving log "
        f"{run.online_window[0]:%Y-%m-%d %H:%M} to {run.online_window[1]:%H:%M}.</p>",
    ]
    if run.alerts:
        parts.append("<ul class=\"alerts\">" + "".join(f"<li>{e(a)}</li>" for a in run.alerts) + "</ul>")

    parts.append("<h2>Freshness</h2><table><tr><th>view</th><th>SLA</th><th>offline lag</th><th>write lag p95 "
                 "(max)</th><th>level</th></tr>")
    for v in run.views:
        writes = ", ".join(f"{w.source} {format_lag(w.p95_s)} ({format_lag(w.max_s or 0)})"
                           for w in v.write_lag if w.p95_s is not None) or "-"
        lag = format_lag(v.offline_lag.total_seconds()) if v.offline_lag is not None else "-"
        sla = e(str(v.to_dict()["freshness_sla"] or "-"))
        parts.append(f"<tr><td>{e(v.view)}</td><td>{sla}</td><td>{lag}</td><td>{e(writes)}</td>"
                     f"<td>{_badge(v.level)}</td></tr>")
    parts.append("</table><div class=\"cards\">")
    for v in run.views:
        plot = _freshness(v, history)
        body = plot or "<p>No history yet: freshness over time appears after a few runs.</p>"
        parts.append(f"<div class=\"card\" style=\"width:520px\"><h3>{e(v.view)}: freshness over time</h3>{body}"
                     + "".join(f"<p>{e(n)}</p>" for n in v.notes) + "</div>")
    parts.append("</div>")

    parts.append("<h2>Features</h2><p><input id=\"filter\" type=\"search\" placeholder=\"filter features\" "
                 "aria-label=\"filter features\"> <label><input id=\"only-bad\" type=\"checkbox\"> only not ok"
                 "</label></p><div class=\"cards\">")
    skew = {(s.view, s.feature): s for s in run.skew}
    for f in run.features:
        s = skew.get((f.view, f.feature))
        level = "alert" if s is not None and s.alert else f.level
        stats = (f"KS {_fmt(f.ks, '.3f')}, PSI {_fmt(f.psi, '.3f')} (drift {f.drift_level})" if f.method == "ks+psi"
                 else f"PSI {_fmt(f.psi, '.3f')} (drift {f.drift_level})" if f.method == "psi"
                 else "drift not checked")
        fill = f"fill offline {_fmt(f.fill_offline, '.1%')}, online {_fmt(f.fill_online, '.1%')}"
        skewed = f"; skew {s.share:.2%} of {s.compared}" if s is not None and s.compared else ""
        values = run.samples.get((f.view, f.feature))
        plot = _distribution(f, *values) if values is not None and (values[0].size or values[1].size) else ""
        parts.append(
            f"<div class=\"card\" data-ref=\"{e(f.ref.lower())}\" data-level=\"{e(level)}\">"
            f"<h3>{e(f.ref)} {_badge(level)}</h3><p>{e(stats)}; {e(fill)}{e(skewed)}</p>"
            f"{plot}" + "".join(f"<p>{e(n)}</p>" for n in f.notes) + "</div>")
    parts.append(f"</div><script>{_JS}</script></body></html>")
    return "\n".join(parts)


def write_report(run: "MonitorRun", path: str | Path, history: pa.Table | None = None) -> Path:
    """Write :func:`render_report` to ``path`` (its folder created); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(run, history), encoding="utf-8")
    return path
