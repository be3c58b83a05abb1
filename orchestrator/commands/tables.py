"""How the commands print: tables for people (``--json`` prints the data instead)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..ledger import settlements
from ..relative import relative
from ..sharing import SAME_ADDRESS
from .context import out

if TYPE_CHECKING:
    from ..demo import DemoResult
    from ..pluginhost import PluginInfo
    from ..regimes import Regime
    from ..server.config import ServerConfig


def print_incidents(incidents: Iterable[Mapping[str, Any]]) -> None:
    """The incident list. Ids are never cut: every other command needs them whole."""
    rows = list(incidents)
    table = Table("playbook", "mode", "state", "aware at", "people", "title")
    _whole_column(table, "incident", [i["id"] for i in rows])
    for i in rows:
        table.add_row(i["id"], i["playbook"], i["mode"], i["state"], _when(i["aware_at"]),
                      f"{i['people'] or 0:,}", i["title"])  # fmt: skip
    out.print(table)


def _whole_column(table: Table, header: str, values: list[str]) -> None:
    """Insert a first column that is never wrapped or cut (ids a commander copies)."""
    table.add_column(header, no_wrap=True, min_width=max((len(v) for v in values), default=0))
    table.columns.insert(0, table.columns.pop())


def print_timeline(events: Iterable[Mapping[str, Any]]) -> None:
    """An incident's audit trail, oldest first. Consecutive settle (or receipt) batches are one
    line with their summed outcomes: a campaign writes thousands (``--json`` lists each)."""
    table = Table("at (UTC)", "event", "step", "by", "detail")
    for e in settlements.grouped_timeline(events):
        at = _utc(e["at"])
        if e.get("batches"):
            kind = f"{e['kind']} ×{e['batches']:,}" if e["batches"] > 1 else e["kind"]
            until = f", until {_utc(e['until'])}" if e["until"] != e["at"] else ""
            detail = (", ".join(f"{k}={v:,}" for k, v in e["outcomes"].items())
                      + f" (audit rows {e['rows']}{until})")  # fmt: skip
            table.add_row(at, kind, e["step"] or "", e["actor"] or "", detail)
            continue
        if e["kind"] == "incident.updated":
            detail = _update_line(e["detail"])
        else:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(e["detail"].items()))
        table.add_row(at, e["kind"], e["step"] or "", e["actor"] or "", detail)
    out.print(table)


def _changes(changes: Iterable[Mapping[str, Any]]) -> str:
    """``affected_count: 1200 -> 4800; reset_url: (none) -> https://...``"""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value) or "(none)"
        return "(none)" if value is None else str(value)

    return "; ".join(f"{c['fact']}: {shown(c['old'])} -> {shown(c['new'])}" for c in changes)


def _update_line(detail: Mapping[str, Any]) -> str:
    """An ``incident.updated`` event as one line: number, changes, reason, follow-ups."""
    text = f"update {detail.get('number')}: {_changes(detail.get('changes', ()))}"
    if detail.get("reason"):
        text += f"; reason: {detail['reason']}"
    follow = ", ".join(detail.get("follow_ups") or ()) or "none"
    return text + f"; follow-ups: {follow} (to {detail.get('notified', 0):,} notified)"


def print_update(result: Mapping[str, Any]) -> None:
    """What ``breach update`` did: the changes and the follow-ups it scheduled."""
    out.print(f"{result['incident']} update {result['number']} by {result['by']}: "
              f"{_changes(result['changes'])}")  # fmt: skip
    if result.get("reason"):
        out.print(f"reason: {result['reason']}")
    if not result["follow_ups"]:
        out.print("no step of the playbook is on_update: no follow-up notice is sent")
    for f in result["follow_ups"]:
        due = f" due {_when(f['due_at'])}" if f.get("due_at") else ""
        out.print(f"follow-up {f['step']} ({f['channel']}){due} to the "
                  f"{result['notified']:,} people who received an earlier notice")  # fmt: skip
    if result.get("outbox"):
        out.print(f"dry-run: follow-ups rendered into {result['outbox']}")


def _utc(at: str) -> str:
    return datetime.fromisoformat(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_plugins(infos: Iterable[PluginInfo]) -> None:
    """Plugins: version, hooks, channels, audience sources, missing settings."""
    table = Table("plugin", "version", "hooks", "channels", "sources", "settings")
    for i in infos:
        settings = ("missing: " + ", ".join(i.missing_settings)) if i.missing_settings else "ok"
        table.add_row(i.name, i.version, ", ".join(i.hooks), ", ".join(i.channels),
                      ", ".join(i.sources), settings)  # fmt: skip
    out.print(table)


def print_regimes(regimes: Mapping[str, Regime]) -> None:
    """Notification regimes and their deadlines."""
    table = Table("name", "deadline", "clock", "time zone", "applies when",
                  caption="A working summary for planning, not legal advice.")  # fmt: skip
    _whole_column(table, "regime", list(regimes))
    for key, regime in regimes.items():
        table.add_row(key, regime.name, str(regime.deadline), regime.clock, regime.timezone,
                      regime.applies_when or "")  # fmt: skip
    out.print(table)


def print_playbooks(rows: Iterable[Mapping[str, Any]]) -> None:
    """The shipped playbooks, by id."""
    shown = list(rows)
    table = Table("version", "title")
    _whole_column(table, "id", [p["id"] for p in shown])
    for p in shown:
        table.add_row(p["id"], p["version"], p["title"])
    out.print(table)


def print_summary(summary: dict[str, Any]) -> None:
    """The dry-run report as tables: steps, channels with ETA, deadlines."""
    people = summary["audience"]["people"]
    playbook = summary["playbook"]
    title = f"  {playbook['title']} ({playbook['id']} v{playbook['version']})  mode: "
    out.print(Text.assemble((summary["incident"], "bold"), title, (summary["mode"], "yellow"),
                            f"  people: {people:,}"))  # fmt: skip
    steps = Table(
        "step", "channel", "at", "fired", "rendered", "fallback", "skipped", title="Steps"
    )
    notes: list[str] = []
    for s in summary["steps"]:
        states = s.get("states", {})
        steps.add_row(
            s["step"], s["channel"], s["offset"], "yes" if s["fired"] else Text("no", style="dim"),
            f"{states.get('sent', 0) + states.get('pending', 0):,}", f"{s.get('fallback', 0):,}",
            f"{states.get('skipped', 0):,}",
        )  # fmt: skip
        if s["condition"]:
            verdict = "true" if s["condition_result"] else "false"
            notes.append(f"{s['step']}: condition `{s['condition']}` was {verdict}")
        if s.get("note"):
            notes.append(f"{s['step']}: {s['note']}")
        for reason, n in list(s.get("skipped_reasons", {}).items())[:3]:
            notes.append(f"{s['step']}: skipped {n:,} — {reason}")
        shown = dict(list(s.get("skipped_reasons", {}).items())[:3])
        if s.get("same_address") and SAME_ADDRESS not in shown:
            notes.append(f"{s['step']}: skipped {s['same_address']:,} — {SAME_ADDRESS}")
    out.print(steps)
    for note in notes:
        out.print(f"  {note}", highlight=False)
    channels = Table("channel", "messages", "rate/s", "ETA", title="Channels")
    for name, c in sorted(summary["channels"].items()):
        channels.add_row(name, f"{c['messages']:,}", f"{c['rate_per_second']:g}",
                         _eta(c["eta_seconds"]))  # fmt: skip
    out.print(channels)
    if summary["deadlines"]:
        deadlines = Table("regulator", "regime", "rule", "due", title="Deadlines")
        for d in summary["deadlines"]:
            due = _when(d["due_at"]) if d["due_at"] else "no fixed clock"
            deadlines.add_row(d["name"], d["regime"], d["rule"], due)
        out.print(deadlines)
    if summary.get("regimes"):
        print_applicability(summary["regimes"])
    for warning in summary.get("warnings", ()):
        out.print(f"warning: {warning}", style="yellow")
    out.print(f"outbox: {summary['outbox']}  (open index.html for previews)")


def _when(iso: str) -> str:
    """An ISO time as a commander reads it: ``2026-11-28 15:44 UTC``."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def print_status(data: dict[str, Any]) -> None:
    """One incident: header, steps with delivery counts, ETA and why, circuits, deadlines."""
    current = datetime.fromisoformat(data["now"]) if data.get("now") else datetime.now(UTC)
    aware = _ago(data["aware_at"], current)
    header = (f" {data['title']}  mode: {data['mode']}  state: {data['state']}  "
              f"people: {data['people'] or 0:,}  aware {aware}")  # fmt: skip
    out.print(Text.assemble((data["id"], "bold"), header))
    if data.get("redirected"):
        out.print(
            "staging: every message goes to the --redirect-to test recipients", style="yellow"
        )
    table = Table("channel", "state", "due", "deliveries", "ETA")
    _whole_column(table, "step", [s["step"] for s in data["steps"]])
    notes: list[Text] = []
    for s in data["steps"]:
        counts = ", ".join(f"{k}: {v:,}" for k, v in sorted(s["deliveries"].items()))
        eta = _eta(s["eta_seconds"]) if s.get("eta_seconds") else ""
        due = _ago(s["due_at"], current) if s.get("due_at") else ""
        table.add_row(s["step"], s["channel"], _state(s["state"]), due, counts, eta)
        if s.get("why"):
            notes.append(Text.assemble(f"  {s['step']}: ", s["why"]))
        if s.get("same_address"):
            notes.append(Text(f"  {s['step']}: {s['same_address']:,} skipped: one message per "
                              "address, another person has the same one"))  # fmt: skip
    out.print(table)
    for line in notes:
        out.print(line)
    for u in data.get("updates") or ():
        said = (f"update {u['number']} {_ago(u['at'], current)} by {u['by']}: "
                f"{_changes(u['changes'])}")  # fmt: skip
        if u.get("reason"):
            said += f" ({u['reason']})"
        follow = ", ".join(u["follow_ups"]) or "no follow-up step"
        out.print(f"{said}; {follow} to {u.get('notified') or 0:,} notified")
    if data.get("next_step"):
        [step] = [s for s in data["steps"] if s["step"] == data["next_step"]]
        out.print(f"next: {step['step']} {_ago(step['due_at'], current)}", highlight=False)
    for name, c in sorted((data.get("circuits") or {}).items()):
        if c["state"] == "closed":
            continue
        probe = f", next probe {_ago(c['next_probe_at'], current)}" if c["state"] == "open" else ""
        text = f"circuit {name}: {c['state'].replace('_', '-')} (tripped {c['trips']}x){probe}"
        out.print(Text(text, style="yellow"))
    if data.get("deadlines"):
        deadlines = Table("regulator", "regime", "due (UTC)", "time left")
        for d in data["deadlines"]:
            deadlines.add_row(d["name"], d["regime"], _when(d["due_at"]) if d["due_at"] else "",
                              _deadline(d, current))  # fmt: skip
        out.print(deadlines)
    if data.get("regimes"):
        print_applicability(data["regimes"])
    for warning in data.get("warnings", ()):
        out.print(f"warning: {warning}", style="yellow")
    if data.get("clocks"):
        print_clocks(data["clocks"])
    if data.get("possible_duplicates"):
        out.print(
            "possible duplicates (sends that may have reached the provider twice: its answer "
            "was lost to a timeout or a dropped connection, or a crash cut the send off, and "
            f"the message was tried again): {data['possible_duplicates']:,}"
        )
    if data.get("workers") is not None:
        print_workers(data["workers"])


def print_workers(workers: Mapping[str, Any]) -> None:
    """``workers: 3 live (host:pid run, ...)``: the delivery processes sharing the ledger."""
    live = workers.get("live", 0)
    names = ", ".join(f"{w['host']}:{w['pid']} {w['kind']}" for w in workers.get("list", ()))
    out.print(f"workers: {live} live" + (f" ({names})" if names else ""), highlight=False)


def regimes_markdown(regimes: Mapping[str, Regime]) -> str:
    """The regimes table as Markdown (the README's clocks table is this text)."""
    header = ("regime", "statute", "notifies", "deadline", "counted from", "days end in",
              "applies when")  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, r in regimes.items():
        zone = r.timezone + (f" (business days: {r.holidays} holidays)" if r.holidays else "")
        applies = f"`{r.applies_when}`" if r.applies_when else "no threshold"
        if r.each_region:
            applies += f" in any {r.each_region}* region"
        cells = [f"`{key}`", r.statute, r.notifies, str(r.deadline), r.clock, zone, applies]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def print_deadline(data: Mapping[str, Any]) -> None:
    """One regime's due moment (``breach deadline``)."""
    due = data["due_at"] or "no fixed deadline (" + data["rule"] + ")"
    out.print(Text.assemble((data["regime"], "bold"), f"  {data['name']}"))
    out.print(f"  rule:   {data['rule']} from {data['clock']} ({data['timezone']}"
              + (f", holidays {data['holidays']}" if data["holidays"] else "") + ")")  # fmt: skip
    out.print(f"  from:   {data['from']}")
    out.print(f"  due at: {due}")


def print_report_check(result: Mapping[str, Any]) -> None:
    """A report's required items: where each comes from, and what the incident gives."""
    table = Table("item", "from", "value", "", title=f"{result['regime']} report to "
                  f"{result['regulator']}")  # fmt: skip
    for i in result["items"]:
        value = "" if i["value"] is None else str(i["value"])
        shown = value if len(value) <= 60 else value[:57] + "..."
        status = Text("missing", style="red") if i["missing"] else Text("ok")
        table.add_row(i["item"], i["source"] or "(kept by hand)", shown, status)
    out.print(table)


def print_applicability(rows: Sequence[Mapping[str, Any]]) -> None:
    """Which regimes apply to an incident, and why."""
    table = Table("applies", "why", title="Regimes")
    _whole_column(table, "regime", [r["regime"] for r in rows])
    for r in rows:
        applies = {True: Text("yes", style="bold"), False: Text("no"), None: Text("unknown")}
        table.add_row(r["regime"], applies[r["applies"]], r["why"])
    out.print(table)


def print_clocks(clocks: Sequence[Mapping[str, Any]]) -> None:
    """An incident's statutory clocks: running, overdue, or waiting for their event."""
    table = Table("regime", "rule", "started", "due", "state", title="Clocks")
    for column in table.columns[2:4]:
        column.no_wrap = True  # times are copied whole, offset and all
    for c in clocks:
        state = c["state"] if c["state"] != "waiting" else f"waiting for {c['event']}"
        style = "red" if c["state"] == "overdue" else ""
        table.add_row(c["regime"], c["rule"], c["started_at"] or "", c["due_at"] or "",
                      Text(state, style=style))  # fmt: skip
    out.print(table)


def _ago(iso: str, current: datetime) -> str:
    """An ISO time relative to ``current``: ``in 25 min``, ``3 h ago``."""
    return relative((datetime.fromisoformat(iso) - current).total_seconds())


def _state(state: str) -> Text:
    style = {"blocked": "bold red", "awaiting_approval": "yellow", "running": "cyan",
             "not_fired": "dim", "missed": "red", "cancelled": "dim"}.get(state, "")  # fmt: skip
    return Text(state, style=style)


def _deadline(d: Mapping[str, Any], current: datetime) -> Text | str:
    """Time left, or when the report was filed against the deadline."""
    if d.get("filed_at"):
        early = d.get("filed_before_deadline_hours")
        margin = f", {early:.1f} h before the deadline" if early is not None else ""
        return Text(f"filed {_ago(d['filed_at'], current)}{margin}", style="green")
    if d.get("waiting_for"):
        return f"waiting for {d['waiting_for']}"
    left = d.get("hours_left")
    if left is None or not d.get("due_at"):
        return "no fixed clock"
    text = _ago(d["due_at"], current)
    return text if left >= 0 else Text(f"overdue, due {text}", style="red")


def print_demo_report(result: DemoResult, console: Console, *, keep: bool) -> None:
    """The status table, the simulator against the ledger, where the files are."""
    print_status(result.status)
    duplicates = int(result.status.get("possible_duplicates") or 0)
    table = Table("provider", "channel", "requests", "faults injected", "accepted", "sent",
                  "agree", title="Providers: accepted by the simulator, sent in the ledger",
                  )  # fmt: skip
    shown: set[str] = set()
    for c in result.channels:
        stats = result.provider_stats.get(c.provider, {})
        first = c.provider not in shown
        shown.add(c.provider)
        outcomes = stats.get("outcomes", {})
        faults = " · ".join(
            f"{label} {outcomes[key]:,}"
            for key, label in (("error", "5xx"), ("throttled", "429"), ("rate_limited", "429"),
                               ("dropped", "drop"))
            if outcomes.get(key)
        )  # fmt: skip
        agree = "yes" if c.agrees(duplicates) else Text("NO", style="red")
        table.add_row(c.provider if first else "", c.channel,
                      f"{stats.get('requests', 0):,}" if first else "",
                      (faults or "none") if first else "", f"{c.accepted:,}", f"{c.sent:,}",
                      agree)  # fmt: skip
    console.print(table)
    counts = result.engine_counts
    console.print(
        f"engine: {counts.get('sent', 0):,} sent, {counts.get('retried', 0):,} retries after "
        f"provider faults, {counts.get('failed', 0):,} refused, {counts.get('dead', 0):,} gave up"
    )
    if not result.channels:
        console.print("No step of this run sent through a provider (SMS, call, e-mail, push).")
    elif result.agrees:
        totals = ", ".join(f"{c.channel} {c.sent:,}" for c in result.channels)
        console.print(Text.assemble(("Simulator and ledger agree", "green"),
                                    f" on every channel ({totals})."))  # fmt: skip
    else:
        console.print(
            Text.assemble(("Simulator and ledger disagree", "red"),
                          ": a message the provider accepted is not recorded as sent (see the "
                          "table); this is a bug, please report it with --json output")
        )  # fmt: skip
    for label, pattern, folder in (("public notice", "*/index.html", "public"),
                                   ("regulator filing", "*.json", "filings")):  # fmt: skip
        for path in sorted((result.outdir / folder).glob(pattern)):
            console.print(f"{label}: {path}")
    console.print(f"ledger: {result.db}  (`breach status {result.incident_id} --db URL` again)")
    if not result.finished:
        console.print("stopped before every delivery settled", style="yellow")
    console.print(f"done in {result.seconds:.1f}s")
    if keep:
        console.print(f"Simulator page: {result.page}  (press Enter or Ctrl-C to stop it)")
    else:
        console.print(f"Simulator page: {result.page}  (stopped now; add --keep to browse it)")


def print_decision(summary: dict[str, Any], config: ServerConfig) -> None:
    echo = click.echo
    action = summary["action"]
    echo(f"hook:     {summary['hook']}")
    if "route" in summary:
        echo(f"route:    {summary['route']} (playbook {summary['playbook']}, audience "
             f"{summary['audience']})")  # fmt: skip
    if action == "create":
        echo(f"action:   would create a new incident in mode {summary['mode']}")
        echo(f"aware at: {summary['aware_at']}")
        echo("facts:")
        for name, value in sorted(summary["facts"].items()):
            echo(f"  {name} = {json.dumps(value, ensure_ascii=False, default=str)}")
    elif action == "join":
        echo(f"action:   would join open incident {summary['incident']}")
        for kind, items in summary["alerts"].items():
            if items:
                echo(f"  {kind}: {', '.join(items)}")
        for name, value in sorted(summary["facts_changed"].items()):
            echo(f"  fact {name} -> {json.dumps(value, ensure_ascii=False, default=str)}")
    elif action == "no-route":
        echo('action:   none: no route matched (the server answers 202 "no route")')
        for line in summary.get("tried", []):
            echo(f"  {line}")
    else:
        echo(f"action:   none: {summary.get('reason', '')}")
    if summary.get("dedupe_key"):
        echo(f"dedupe:   {summary['dedupe_key']}")
    if summary.get("note"):
        echo(f"note:     {summary['note']}")
    if config.force_mode:
        echo(f"(force_mode = {config.force_mode!r} in {config.path})")
