"""The web dashboard in headless Chromium against a running system.

The page must load with nothing but loopback (the browser resolves no other
host; every request it makes is checked), update by itself from the event
stream, draw its charts, show the gateway's figures, and act through the
registry only after a confirmation. Actions need the operator link (`hftctl
dashboard`, token in the fragment): without it the buttons are disabled and
the server refuses; a stale token is refused and the page says so. A
screenshot is saved in the test's tmp directory (and copied to
$HFTD_SCREENSHOT_DIR if that is set).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hftd.msg.status import format_dollars
from tests.integration.frontends import (
    Browser,
    chromium_path,
    dashboard_url,
    latency_us,
    monitor_config,
    monitor_state,
    quiesce,
    status,
    wait_for,
)
from tests.support import start_daemon

pytestmark = pytest.mark.integration

READ_ONLY = "read-only: run `hftctl dashboard` for the operator link"
REFUSED = "not authorized: open the link from `hftctl dashboard` again"
BUTTONS = "[...document.querySelectorAll('#actions button')]"


def test_dashboard_in_chromium(tmp_path: Path) -> None:
    chromium_path()  # skip early if there is no browser
    cfg, port = monitor_config(tmp_path)
    base = f"http://127.0.0.1:{port}"
    with start_daemon("up", cfg) as up:
        run_dir = Path(up.config["system"]["run_dir"])
        wait_for(lambda: monitor_state(run_dir)["counters"]["fills"] >= 2, 60, "2 fills")
        browser = Browser()
        try:
            # Without the operator link: figures, but no actions.
            browser.navigate(base + "/")
            browser.wait_for(
                "document.getElementById('conn').textContent === 'live'", what="the event stream"
            )
            assert browser.eval(f"{BUTTONS}.length") == 4
            assert browser.eval(
                f"{BUTTONS}.every(b => b.disabled && b.title.includes('hftctl dashboard'))"
            )
            assert browser.text("#action-result") == READ_ONLY
            browser.eval("document.querySelector('button[data-verb=pause]').click()")
            assert not browser.eval("document.getElementById('modal').classList.contains('open')")
            # ... and the server refuses what the page would have sent, token aside.
            assert (
                browser.eval(
                    "fetch('/api/action/pause', {method: 'POST', headers: {'X-Hftd-Action': "
                    "'pause', 'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)"
                )
                == 401
            )
            assert status(run_dir, "gateway")["detail"]["mode"] == "active"

            # The operator link: the token moves to the tab's storage, out of the address bar.
            url = dashboard_url(cfg)
            token = url.partition("#token=")[2]
            browser.navigate("about:blank")
            browser.navigate(url)
            browser.wait_for(
                "document.getElementById('conn').textContent === 'live'", what="the event stream"
            )
            assert browser.eval("window.location.href") == base + "/"
            assert browser.eval("sessionStorage.getItem('hftd-token')") == token
            assert browser.eval(f"{BUTTONS}.every(b => !b.disabled)")
            assert browser.text("#action-result") == ""
            # Figures update by themselves (server push): the poll number and the md count.
            seq0, md0 = int(browser.text("#seq")), int(browser.text("#cnt-md"))
            browser.wait_for(
                f"+document.getElementById('seq').textContent > {seq0 + 3} && "
                f"+document.getElementById('cnt-md').textContent > {md0}",
                what="figures to move",
            )
            browser.wait_for("history.length >= 3", what="3 chart points")
            assert browser.eval("document.getElementById('chart-latency').width > 0")
            assert browser.eval("document.querySelectorAll('#health tbody tr').length") == 5
            for d in status(run_dir, "supervisor"):
                sel = f"#health tr[data-daemon='{d['name']}']"
                assert browser.text(sel + " td:nth-child(2)") == "ready"
                assert browser.text(sel + " td:nth-child(3)") == str(d["pid"])
            # a row per strategy instance, with its own figures (the strategy's Status)
            names = sorted(status(run_dir, "strategy")["detail"]["strategies"])
            browser.wait_for(
                f"[...document.querySelectorAll('#strategies tbody tr')]"
                f".map(r => r.dataset.strategy).join() === {','.join(names)!r}",
                what="a row per strategy",
            )

            # Settle the venue, then the page must show the gateway's numbers exactly.
            gw = quiesce(cfg, run_dir)
            pos = gw["positions"]
            want_total = f"{pos['total'] / 10_000:,.2f}"
            browser.wait_for(
                f"document.getElementById('total-pnl') && "
                f"document.getElementById('total-pnl').textContent === "
                f"'{want_total}' && "
                f"+document.getElementById('cnt-fills').textContent === "
                f"{gw['fills']}",
                what="the settled figures",
            )
            for p in pos["positions"]:
                row = f"#positions tr[data-symbol='{p['symbol']}']"
                assert browser.text(row + " td:nth-child(2)") == str(p["qty"])
                assert browser.text(row + " td:nth-child(4)") == f"{p['mark'] / 10_000:.4f}"
            assert browser.text("#cnt-orders") == str(gw["sent"])
            # Risk: used/limit beside each bar, as the gateway counts it: each position
            # against its limit, the day's P&L against the loss limit, in money.
            figures = gw["risk_figures"]
            for p in (p for p in pos["positions"] if p["qty"]):  # (0: maybe never sent)
                f = figures[f"position.{p['symbol']}"]
                assert (f["used"], f["limit"]) == (abs(p["qty"]), 2_000)  # default.toml's
                sel = f"#risk .bar[data-key='position.{p['symbol']}'] .fig"
                assert browser.text(sel) == f"{f['used']:,}/{f['limit']:,}"
            assert browser.text("#risk .bar[data-key='loss'] .fig") == (
                f"{format_dollars(pos['total'])} / -$50,000.00"
            )
            assert browser.text("#risk-breaker") == "armed"
            # Recent trades: a fill that reduced a position shows its P&L per share
            # closed, one that opened or added "-" (the same trades as the monitor's).
            trades = monitor_state(run_dir)["trades"][:12]
            want = [
                "-" if v is None else ("+" if v > 0 else "") + f"{v:,.4f}"
                for v in (t["pnl_per_share"] for t in trades)
            ]
            cells = "[...document.querySelectorAll('#trades td.pps')].map(td => td.textContent)"
            assert browser.eval(cells) == want
            # Latency can arrive a poll after the counters (the monitor refreshes its
            # latency figures once a second): wait for it, then it must match.
            t2t = next(h for h in latency_us(gw) if h["hop"] == "t1_t4")
            cell = "document.querySelector(\"#latency tr[data-hop='t1_t4'] td:nth-child(2)\")"
            browser.wait_for(
                f"{cell} && {cell}.textContent === '{t2t['count']}'",
                what="the settled tick-to-trade count",
            )

            shot = browser.screenshot(tmp_path / "hftd-dashboard.png")
            assert shot.stat().st_size > 20_000

            # Actions: halt asks, and Cancel sends nothing ...
            browser.eval("document.querySelector('button[data-verb=halt]').click()")
            browser.wait_for(
                "document.getElementById('modal').classList.contains('open')",
                what="the confirmation dialog",
            )
            assert "HALT" in browser.text("#confirm-text")
            browser.eval("document.getElementById('confirm-no').click()")
            assert browser.text("#action-result") == "halt: cancelled"
            assert status(run_dir, "gateway")["detail"]["mode"] == "active"
            # ... pause, confirmed, goes through the registry to the gateway.
            browser.eval("document.querySelector('button[data-verb=pause]').click()")
            browser.wait_for(
                "document.getElementById('modal').classList.contains('open')",
                what="the confirmation dialog",
            )
            browser.eval("document.getElementById('confirm-yes').click()")
            browser.wait_for(
                "document.getElementById('action-result').textContent === 'pause: gateway ok'",
                what="pause accepted",
            )
            assert status(run_dir, "gateway")["detail"]["mode"] == "paused"
            browser.wait_for(
                "document.getElementById('mode').textContent === 'paused'",
                what="mode paused on the page",
            )
            browser.wait_for(  # and what the operator does next, as hftctl status says it
                "!document.getElementById('next').hidden && document.getElementById('next')"
                ".textContent.includes('paused: new orders held')",
                what="the next step on the page",
            )
            browser.wait_for(
                "[...document.querySelectorAll('#alerts li')].some("
                "li => li.dataset.key === 'trading_mode:gateway')",
                what="the trading-mode alert",
            )
            browser.screenshot(tmp_path / "hftd-dashboard-paused.png")
            browser.eval("document.querySelector('button[data-verb=resume]').click()")
            browser.eval("document.getElementById('confirm-yes').click()")
            browser.wait_for(
                "document.getElementById('mode').textContent === 'active'", what="mode active again"
            )
            browser.wait_for("document.getElementById('next').hidden", what="no next step")

            # A token of another run: refused, nothing done, the page goes read-only.
            browser.eval("sessionStorage.setItem('hftd-token', 'stale-token-of-another-run')")
            browser.navigate(base + "/")
            browser.eval("document.querySelector('button[data-verb=pause]').click()")
            browser.eval("document.getElementById('confirm-yes').click()")
            browser.wait_for(
                f"document.getElementById('action-result').textContent === {REFUSED!r}",
                what="the refusal on the page",
            )
            assert browser.eval(f"{BUTTONS}.every(b => b.disabled)")
            assert status(run_dir, "gateway")["detail"]["mode"] == "active"

            # Nothing left loopback: every request went to this monitor.
            assert browser.requests, "no requests recorded"
            others = [u for u in browser.requests if not u.startswith(base + "/")]
            assert others == [], others
            # The token never went out in a URL (a fragment is not sent).
            assert not [u for u in browser.requests if token in u]
        finally:
            browser.close()
