"""The whole delivery pipeline against a bare HTTP client, in one run, on one fast endpoint.

    python benchmarks/bench_pipeline.py [--sms 20000] [--email 50000] [--push 5000]
        [--people 1000000] [--direct 10000] [--postgres URL] [--repeat 3]

Every figure comes from its own child process of this one run, all sending to the same canned
endpoint (``canned.py``, its own process: fixed answers in tens of µs, so the clients are what
is measured, not the server):

* **bare**: aiohttp alone sends the requests the notifier would make (bodies built beforehand,
  64 requests or batches in flight, a 100-connection pool): the practical limit of this machine.
* **pipeline**: ``Breach.trigger`` of a one-step live playbook, then ``Breach.run`` until idle
  with the notifier's rate at 10,000,000/s and 64 batches in flight: fan-out into the ledger,
  claiming, the real SDK plugins (twilio-sms, sendgrid-email, fcm-push), settling. On SQLite,
  and on PostgreSQL when ``--postgres`` is given.
* **sdk loop** and **apprise**: ``--direct`` SMS and e-mails through a hand-written loop over
  the Twilio and SendGrid SDKs, and through Apprise (``pip install .[bench]``), the way a team
  without this tool would send them.
* **fan-out**: ``--people`` people planned into the ledger (one step, no sending): people per
  second, and the peak RSS of that process.

msgs/s counts messages the endpoint accepted per second of wall time; CPU/msg is the process
CPU time (user + system, every thread) over the same span divided by the messages. The machine
is shared and noisy: compare ratios measured in the same run, not figures across runs. With
``--repeat N`` every row is measured N times, its runs interleaved with the other rows', and the
run with the median rate is shown: one slow moment then moves a ratio less.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import canned  # noqa: E402
from bench_providers import POOL, Bare, batches, in_flight, messages  # noqa: E402

from orchestrator.simulator import SimulatorConfig  # noqa: E402
from orchestrator.simulator.cli import plugin_settings  # noqa: E402

CONCURRENCY = 64
CHANNELS = {  # channel -> (notifier, canned counter, audience column)
    "sms": ("twilio-sms", "twilio", "phone"),
    "email": ("sendgrid-email", "sendgrid", "email"),
    "push": ("fcm-push", "fcm", "push_token"),
}
PLAYBOOK = """\
id: bench-{channel}
title: Account credentials exposed
version: 1
severity: high
organisation:
  name: Northwind Accounts
  contact_email: privacy@northwind.example
  contact_phone: "+1 800 555 0100"
notice:
  en:
    subject: "Notice of data breach: reset your Northwind password"
    what_happened: >-
      A backup of our account database was reachable from the internet between 2 and 9
      November 2026. We closed the access as soon as we learned of it.
    impact: >-
      Someone may try to sign in to your Northwind account, or to other services where you use
      the same password.
    measures: >-
      We closed the exposed backup, invalidated every session and require a new password at
      your next sign-in.
    advice: >-
      Choose a new password at https://northwind.example/reset and turn on two-step
      verification.
    contact: "privacy@northwind.example or +1 800 555 0100 (free, 24/7)"
    sms: >-
      Northwind: your account password may have been exposed. Reset it at
      https://northwind.example/reset. Help: +1 800 555 0100
    push: Your password may have been exposed. Tap to reset it now.
steps:
  - id: notify
    channel: {channel}
    notifier: {notifier}
    at: +0m
"""


def audience(path: Path, people: int) -> Path:
    """``people`` rows, each reachable on every channel at addresses of their own (steps send
    one message per address, as by default: the bench pays for finding shared ones).

    Ids are UUIDs, in no order, as a customer export often has them: each index on the
    recipient id then takes a row on a random page, where ids in file order always land at the
    end (the ledger's fan-out of 200,000 people took 1.7 times as long with UUIDs)."""
    ids = random.Random(people)
    with path.open("w", encoding="utf-8") as out:
        out.write("id,name,locale,phone,email,push_token\n")
        for i in range(people):
            person = uuid.UUID(int=ids.getrandbits(128), version=4)
            out.write(f"{person},Person {i},en,+1415{2_000_000 + i},"
                      f"person{i}@example.com,fcm-token-{i:08d}\n")  # fmt: skip
    return path


class Span:
    """Wall and process CPU time of a block."""

    def __enter__(self) -> Span:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _stat(url: str, counter: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(f"{url}/_stats") as r:
        return int((await r.json()).get(counter, 0))


async def _reset(url: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{url}/_reset") as r:
        await r.read()


# -- what each child process measures ---------------------------------------------------------


def child_bare(url: str, channel: str, count: int) -> dict[str, Any]:
    """aiohttp alone, the notifier's own request bodies built before the clock starts."""
    from breach_fcm import FcmPush
    from breach_sendgrid import SendGridEmail
    from breach_twilio import TwilioSms

    settings = plugin_settings(url, SimulatorConfig())
    notifier = {"sms": TwilioSms, "email": SendGridEmail, "push": FcmPush}[channel](settings)

    async def go() -> Span:
        connector = aiohttp.TCPConnector(limit=POOL)
        async with aiohttp.ClientSession(connector=connector) as session:
            bare = Bare(session, url, settings)
            prepare = {"sms": bare.sms_jobs, "email": bare.email_jobs, "push": bare.push_jobs}
            jobs = prepare[channel](notifier, batches(messages(channel, count), notifier.max_batch))
            await _reset(url)
            with Span() as span:
                await in_flight(jobs, CONCURRENCY)
            return span

    span = asyncio.run(go())
    return {
        "seconds": span.wall,
        "cpu": span.cpu,
        "sent": asyncio.run(_stat(url, CHANNELS[channel][1])),
    }


def one_step(url: str, channel: str, count: int, db: str, work: str) -> tuple[Any, Path, Path, Any]:
    """The session on ``db``, the one-step live playbook of ``channel`` (parsed already) and
    its audience of ``count`` people, and the run's dispatch settings: the notifier at
    10,000,000/s, ``CONCURRENCY`` batches in flight; the plugins pointed at ``url``."""
    from orchestrator.dispatch import DispatchSettings
    from orchestrator.session import Breach

    notifier = CHANNELS[channel][0]
    os.environ.update(plugin_settings(url, SimulatorConfig()))
    folder = Path(work)
    people = audience(folder / f"{channel}.csv", count)
    playbook = folder / f"{channel}.yaml"
    playbook.write_text(PLAYBOOK.format(channel=channel, notifier=notifier), encoding="utf-8")
    breach = Breach(db)
    breach.playbook(playbook)  # parsed before the clock starts, as a running server would have
    settings = DispatchSettings(rates={notifier: 10_000_000}, concurrency=CONCURRENCY)
    return breach, playbook, people, settings


def child_pipeline(url: str, channel: str, count: int, db: str, work: str) -> dict[str, Any]:
    """Trigger a one-step live incident and run the engine until idle."""
    breach, playbook, people, settings = one_step(url, channel, count, db, work)
    asyncio.run(_reset(url))
    with Span() as span:
        breach.trigger(playbook, audience=str(people), mode="live")
        breach.run(settings, until_idle=True)
    sent = asyncio.run(_stat(url, CHANNELS[channel][1]))
    return {"seconds": span.wall, "cpu": span.cpu, "sent": sent, "rss": _peak_rss_mb()}


def child_fanout(url: str, count: int, db: str, work: str) -> dict[str, Any]:
    """Plan ``count`` people into the ledger: one step's fan-out, nothing sent."""
    from orchestrator.campaign import Campaign
    from orchestrator.ledger import now
    from orchestrator.session import Breach

    os.environ.update(plugin_settings(url, SimulatorConfig()))
    folder = Path(work)
    people = audience(folder / "fanout.csv", count)
    playbook = folder / "fanout.yaml"
    playbook.write_text(PLAYBOOK.format(channel="sms", notifier="twilio-sms"), encoding="utf-8")
    breach = Breach(db)
    incident = breach.trigger(playbook, audience=str(people), mode="live").incident_id
    campaign = Campaign(breach, breach.ledger.incident(incident))
    step = campaign.playbook.steps[0]
    with Span() as span:
        tally = campaign.run_step(step, now())
    return {"seconds": span.wall, "cpu": span.cpu, "sent": tally.tally.people if tally.tally else 0,
            "rss": _peak_rss_mb()}  # fmt: skip


def child_sdk_loop(url: str, channel: str, count: int) -> dict[str, Any]:
    """The Twilio or SendGrid SDK called in a plain loop, as a script would (no ledger)."""
    settings = plugin_settings(url, SimulatorConfig())
    asyncio.run(_reset(url))
    if channel == "sms":
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        async def go() -> None:
            http = AsyncTwilioHttpClient()
            client = Client(settings["TWILIO_ACCOUNT_SID"], settings["TWILIO_AUTH_TOKEN"],
                            http_client=http)  # fmt: skip
            client.api.base_url = url
            slots = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> None:
                async with slots:
                    await client.messages.create_async(
                        to=f"+1415555{100 + i % 100:04d}", from_=settings["TWILIO_FROM"],
                        body="Northwind: your account password may have been exposed.")  # fmt: skip

            try:
                await asyncio.gather(*(one(i) for i in range(count)))
            finally:
                await http.close()

        with Span() as span:
            asyncio.run(go())
    else:
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(api_key=settings["SENDGRID_API_KEY"], host=url)
        with Span() as span:
            for start in range(0, count, 1000):
                client.send({
                    "from": {"email": "privacy@northwind.example"},
                    "subject": "Notice of data breach",
                    "content": [{"type": "text/plain", "value": "Your password was exposed."}],
                    "personalizations": [{"to": [{"email": f"person{i}@example.com"}]}
                                         for i in range(start, min(count, start + 1000))],
                })  # fmt: skip
    counter = CHANNELS[channel][1]
    return {"seconds": span.wall, "cpu": span.cpu, "sent": asyncio.run(_stat(url, counter))}


def child_apprise(url: str, channel: str, count: int) -> dict[str, Any]:
    """Apprise, its endpoints pointed at the canned server and its own pacing switched off."""
    import apprise
    from apprise.plugins.sendgrid import NotifySendGrid
    from apprise.plugins.twilio import NotifyTwilio

    settings = plugin_settings(url, SimulatorConfig())
    NotifyTwilio.notify_sms_url = url + "/2010-04-01/Accounts/{sid}/Messages.json"
    NotifySendGrid.notify_url = url + "/v3/mail/send"
    NotifyTwilio.request_rate_per_sec = 0
    NotifySendGrid.request_rate_per_sec = 0
    notify = apprise.Apprise()
    per_url = 100  # targets per service URL: Apprise sends them one request each
    for start in range(0, count, per_url):
        ids = range(start, min(count, start + per_url))
        if channel == "sms":
            targets = "/".join(f"+1415555{100 + i % 100:04d}" for i in ids)
            # Apprise insists on a 32-character auth token; the canned endpoint reads none
            token = "0" * 32
            notify.add(f"twilio://{settings['TWILIO_ACCOUNT_SID']}:{token}@+14155550199/{targets}")
        else:
            targets = "/".join(f"person{i}@example.com" for i in ids)
            notify.add(f"sendgrid://{settings['SENDGRID_API_KEY']}:"
                       f"privacy@northwind.example/{targets}")  # fmt: skip
    asyncio.run(_reset(url))
    with Span() as span:
        notify.notify(body="Your password may have been exposed.", title="Data breach notice")
    counter = CHANNELS[channel][1]
    return {"seconds": span.wall, "cpu": span.cpu, "sent": asyncio.run(_stat(url, counter))}


CHILDREN: dict[str, Callable[..., dict[str, Any]]] = {
    "bare": child_bare, "pipeline": child_pipeline, "fanout": child_fanout,
    "sdk-loop": child_sdk_loop, "apprise": child_apprise,
}  # fmt: skip


# -- the parent: one child per figure, one table ----------------------------------------------


@dataclass
class Result:
    label: str
    channel: str
    people: int
    seconds: float
    cpu: float
    sent: int
    rss: float | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def spawn(kind: str, *args: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its JSON answer."""
    return run_child(f"{kind} {args[1:3]}", __file__, "--child", kind, json.dumps(args))


def run_child(what: str, script: str, *argv: str) -> dict[str, Any]:
    """``script`` run with ``argv`` in a fresh interpreter: the JSON of its last line of output
    (exits with its errors, saying ``what`` failed)."""
    done = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def answer_as_child(child: Callable[..., dict[str, Any]]) -> bool:
    """In a script started by :func:`run_child` as ``script --child ARGS``: print what ``child``
    answers for the JSON list ARGS, and say so (the script then has nothing else to do)."""
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        return False
    print(json.dumps(child(*json.loads(sys.argv[2]))))
    return True


@contextmanager
def canned_endpoint() -> Iterator[str]:
    """The canned endpoint (``canned.py``) in a process of its own, while the block runs: its
    URL."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    server = context.Process(target=canned.run, args=(queue,), daemon=True)
    server.start()
    try:
        yield queue.get(timeout=30)
    finally:
        server.terminate()
        server.join()


def _postgres_fresh(url: str) -> str:
    """Drop the ledger's tables so each pipeline run starts on an empty PostgreSQL ledger."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def measure(url: str, args: argparse.Namespace, work: Path) -> list[Result]:
    sizes = {"sms": args.sms, "email": args.email, "push": args.push}
    databases: list[tuple[str, Callable[[str], str]]] = [
        ("sqlite", lambda name: f"sqlite:///{work / name}.db")
    ]
    if args.postgres:
        databases.append(("postgres", lambda _name: _postgres_fresh(args.postgres)))
    results: list[Result] = []

    def add(label: str, channel: str, people: int, got: dict[str, Any]) -> None:
        r = Result(label, channel, people, got["seconds"], got["cpu"], got["sent"], got.get("rss"))
        if r.sent != people:
            print(f"warning: {label} {channel}: {r.sent:,} of {people:,} accepted", file=sys.stderr)
        results.append(r)
        print(f"  {label:<18}{channel:<7}{people:>10,}{r.rate:>12,.0f}/s", file=sys.stderr)

    for channel, count in sizes.items():
        if not count:
            continue
        # rounds interleave the bare client and the pipelines, so a slow spell hits all of them
        rounds: list[list[dict[str, Any]]] = []
        for _ in range(args.repeat):
            got = [spawn("bare", url, channel, count)]
            for name, db in databases:
                got.append(spawn("pipeline", url, channel, count, db(f"{channel}-{name}"),
                                 str(work)))  # fmt: skip
            rounds.append(got)
        labels = ["bare aiohttp", *(f"pipeline {name}" for name, _ in databases)]
        for i, label in enumerate(labels):
            add(label, channel, count, _median([r[i] for r in rounds]))

    def repeated(*spawned: Any) -> dict[str, Any]:
        return _median([spawn(*spawned) for _ in range(args.repeat)])

    if args.direct:
        for channel in ("sms", "email"):
            add("sdk loop", channel, args.direct, repeated("sdk-loop", url, channel, args.direct))
            try:
                add("apprise", channel, args.direct,
                    repeated("apprise", url, channel, args.direct))  # fmt: skip
            except SystemExit as exc:
                print(f"apprise skipped ({str(exc)[-200:]}): pip install .[bench]", file=sys.stderr)
    if args.people:
        for name, db in databases:
            planned = repeated("fanout", url, args.people, db(f"fanout-{name}"), str(work))
            add(f"fan-out {name}", "-", args.people, planned)
    return results


def _median(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate (of an even number, the slower of the middle two)."""
    ranked = sorted(runs, key=lambda r: r["sent"] / r["seconds"] if r["seconds"] else 0.0)
    return ranked[(len(ranked) - 1) // 2]


def table(results: Sequence[Result], args: argparse.Namespace) -> str:
    bare = {r.channel: r.rate for r in results if r.label == "bare aiohttp"}
    lines = [
        f"{datetime.now(UTC):%Y-%m-%d}, {multiprocessing.cpu_count()} CPUs, canned endpoint in "
        f"its own process, {CONCURRENCY} requests/batches in flight"
        + (f", median of {args.repeat} runs" if args.repeat > 1 else ""),
        f"{'what':<18}{'channel':<8}{'people':>10}{'msgs/s':>10}{'CPU/msg':>10}"
        f"{'/ bare':>8}{'peak RSS':>10}",
    ]
    lines.append("-" * len(lines[1]))
    for r in results:
        ratio = f"{r.rate / bare[r.channel]:.2f}" if r.channel in bare else ""
        cpu = f"{r.cpu / max(r.sent, 1) * 1e6:,.0f} µs"
        rss = f"{r.rss:,.0f} MB" if r.rss is not None else ""
        unit = "people/s" if r.label.startswith("fan-out") else ""
        lines.append(f"{r.label:<18}{r.channel:<8}{r.people:>10,}{r.rate:>10,.0f}{cpu:>10}"
                     f"{ratio:>8}{rss:>10}{'  ' + unit if unit else ''}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(CHILDREN[sys.argv[2]](*json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sms", type=int, default=20_000, help="people (0: skip)")
    parser.add_argument("--email", type=int, default=50_000, help="people (0: skip)")
    parser.add_argument("--push", type=int, default=5_000, help="people (0: skip)")
    direct = "SMS and e-mails through the SDK loop and Apprise (0: skip)"
    parser.add_argument("--direct", type=int, default=10_000, help=direct)
    parser.add_argument("--people", type=int, default=200_000, help="fan-out size (0: skip)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL ledger")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure every row N times and show its median run")  # fmt: skip
    args = parser.parse_args()

    with canned_endpoint() as url, tempfile.TemporaryDirectory() as tmp:
        results = measure(url, args, Path(tmp))
    print(table(results, args))


if __name__ == "__main__":
    main()
