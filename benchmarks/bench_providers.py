"""Deliveries per second through each provider SDK, against a bare HTTP client, in one run.

    python benchmarks/bench_providers.py [--messages 2000] [--concurrency 4] [--rounds 3]

For each channel the real notifier's ``send()`` (Twilio SDK for SMS, SendGrid SDK for e-mail,
firebase-admin for push) delivers ``--messages`` messages to the provider simulator, in batches
of the notifier's ``max_batch`` with ``--concurrency`` batches in flight, as the engine's
dispatcher would. Then a bare aiohttp client sends the same HTTP requests (same bodies, same
batching, same concurrency, a 100-connection pool like httpx's) to the same simulator: that is
the practical limit of this machine, and the ratio says what the SDK and the notifier cost.

The simulator runs in its own process so that it and the client under test do not share one
interpreter lock. Each figure is the median of ``--rounds``; every round is checked against the
simulator's count of accepted messages. The notifier's figure includes building its payloads
(rendering an e-mail, encoding a push message); the bare client's bodies are built beforehand,
and the "build only" column shows what building alone costs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import aiohttp
from breach_fcm import FcmPush
from breach_sendgrid import SendGridEmail
from breach_twilio import TwilioSms

from orchestrator.audience import Recipient
from orchestrator.message import IncidentContext, Message, RenderedNotice
from orchestrator.notifier import Notifier, Outcome
from orchestrator.simulator import SimulatorConfig, serve
from orchestrator.simulator.cli import plugin_settings

#: aiohttp's pool for the bare client: httpx (under firebase-admin) also allows 100 connections.
POOL = 100


def _serve(queue: Any) -> None:  # pragma: no cover - runs in the simulator's process
    config = SimulatorConfig(request_log_limit=100)  # keep counts, not thousands of bodies
    asyncio.run(serve("127.0.0.1", 0, config, ready=queue.put))


# -- the messages ------------------------------------------------------------------------------

INCIDENT = IncidentContext(
    incident_id="INC-BENCH-0001", playbook_id="credential-leak", playbook_version="3",
    title="Account credentials exposed", severity="high",
    aware_at=datetime(2026, 11, 20, 8, 45, tzinfo=UTC), facts={"affected_count": 48210},
    organisation={"name": "Northwind Accounts", "contact_email": "privacy@northwind.example",
                  "contact_phone": "+1 800 555 0100"},
    mode="live",
)  # fmt: skip
NOTICE = RenderedNotice(
    locale="en",
    subject="Notice of Data Breach: reset your Northwind password",
    what_happened="A backup of our account database was reachable from the internet between 2 "
    "and 9 November 2026. We closed the access as soon as we learned of it.",
    data_involved="The backup held: e-mail address, hashed password, display name.",
    impact="Someone may try to sign in to your Northwind account, or to other services where "
    "you use the same password.",
    measures="We closed the exposed backup, invalidated every session and password reset link, "
    "and require a new password at your next sign-in.",
    advice="Choose a new password at https://northwind.example/reset. If you used the same "
    "password elsewhere, change it there too, and turn on two-step verification.",
    contact="Questions: privacy@northwind.example or +1 800 555 0100 (free, 24/7).",
    sms="Northwind: your account password may have been exposed. Reset it at "
    "https://northwind.example/reset and change it wherever you reused it. Help: +1 800 555 0100",
    push="Your password may have been exposed. Tap to reset it now.",
    call="Your Northwind password may have been exposed.",
    greeting="Dear Alex Example,",
)


def messages(channel: str, count: int) -> list[Message]:
    """``count`` messages of one channel, each to its own address."""
    out = []
    for i in range(count):
        person = Recipient(
            id=f"cust-{i:08d}", row=i + 1, name="Alex Example", locale="en-US", region="US",
            phone=f"+1415555{100 + i % 100:04d}", email=f"person{i}@example.com",
            push_token=f"fcm-token-{i:08d}",
        )  # fmt: skip
        address = {"sms": person.phone, "email": person.email, "push": person.push_token}[channel]
        out.append(Message(delivery_id=f"{INCIDENT.incident_id}:{channel}:{i}", step_id=channel,
                           channel=channel, incident=INCIDENT, notice=NOTICE, recipient=person,
                           address=address))  # fmt: skip
    return out


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


Job = Callable[[], Awaitable[int]]


async def in_flight(jobs: Sequence[Job], concurrency: int) -> int:
    """Run the jobs with at most ``concurrency`` at a time; the sum of what they return."""
    slots = asyncio.Semaphore(concurrency)

    async def one(job: Job) -> int:
        async with slots:
            return await job()

    return sum(await asyncio.gather(*(one(job) for job in jobs)))


# -- the two clients ---------------------------------------------------------------------------


async def through_notifier(notifier: Notifier, batch_list: list[Sequence[Message]],
                           concurrency: int) -> int:  # fmt: skip
    """Messages the notifier reports sent."""

    def job(batch: Sequence[Message]) -> Callable[[], Awaitable[int]]:
        async def run() -> int:
            receipts = await notifier.send(batch, "live")
            return sum(1 for r in receipts if r.outcome is Outcome.SENT)

        return run

    return await in_flight([job(b) for b in batch_list], concurrency)


@dataclass
class Bare:
    """The same requests the notifier makes, through aiohttp and nothing else.

    Each ``*_jobs`` method builds every request body first and returns the sending alone, so the
    timing holds nothing but HTTP.
    """

    session: aiohttp.ClientSession
    url: str
    settings: dict[str, str]

    def post(self, path: str, data: Any, headers: dict[str, str], ok: int, count: int) -> Job:
        async def run() -> int:
            async with self.session.post(self.url + path, data=data, headers=headers) as answer:
                await answer.read()
                return count if answer.status == ok else 0

        return run

    def sms_jobs(self, notifier: Notifier, batch_list: list[Sequence[Message]]) -> list[Job]:
        """One request per message (the Messages API takes one)."""
        assert isinstance(notifier, TwilioSms)
        login = f"{self.settings['TWILIO_ACCOUNT_SID']}:{self.settings['TWILIO_AUTH_TOKEN']}"
        headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}
        payloads = [notifier.build_payload(m) for batch in batch_list for m in batch]
        return [self.post(p["path"], p["form"], headers, 201, 1) for p in payloads]

    def email_jobs(self, notifier: Notifier, batch_list: list[Sequence[Message]]) -> list[Job]:
        """One request per body of up to 1,000 personalizations."""
        assert isinstance(notifier, SendGridEmail)
        headers = {"Authorization": f"Bearer {self.settings['SENDGRID_API_KEY']}",
                   "Content-Type": "application/json"}  # fmt: skip
        jobs = []
        for batch in batch_list:
            for body in notifier.build_batch_payload(batch):
                body["mail_settings"]["sandbox_mode"]["enable"] = False
                data = json.dumps(body).encode()
                count = len(body["personalizations"])
                jobs.append(self.post("/v3/mail/send", data, headers, 202, count))
        return jobs

    def push_jobs(self, notifier: Notifier, batch_list: list[Sequence[Message]]) -> list[Job]:
        """One job per batch that sends all its messages at once, as ``send_each_async`` does."""
        assert isinstance(notifier, FcmPush)
        headers = {"Authorization": f"Bearer {self.settings['FCM_ACCESS_TOKEN']}",
                   "Content-Type": "application/json"}  # fmt: skip
        jobs: list[Job] = []
        for batch in batch_list:
            payloads = [notifier.build_payload(m) for m in batch]
            sends = [self.post(p["path"], json.dumps({"message": p["message"]}).encode(),
                               headers, 200, 1) for p in payloads]  # fmt: skip
            jobs.append(functools.partial(_all_at_once, sends))
        return jobs


async def _all_at_once(jobs: Sequence[Job]) -> int:
    return sum(await asyncio.gather(*(job() for job in jobs)))


# -- the run -----------------------------------------------------------------------------------


@dataclass
class Row:
    channel: str
    notifier: str
    sdk: str
    batch: int
    sdk_rates: list[float]
    bare_rates: list[float]
    build_rates: list[float]

    @property
    def sdk_rate(self) -> float:
        return statistics.median(self.sdk_rates)

    @property
    def bare_rate(self) -> float:
        return statistics.median(self.bare_rates)

    @property
    def build_rate(self) -> float:
        return statistics.median(self.build_rates)


def build_only(notifier: Notifier, batch_list: list[Sequence[Message]]) -> None:
    """What the notifier computes before sending: its payloads (or SDK message objects)."""
    for batch in batch_list:
        if isinstance(notifier, SendGridEmail):
            notifier.build_batch_payload(batch)
        elif isinstance(notifier, FcmPush):
            for message in batch:
                notifier.sdk_message(message)
        else:
            for message in batch:
                notifier.build_payload(message)


async def _accepted(session: aiohttp.ClientSession, url: str, provider: str) -> int:
    async with session.get(f"{url}/_sim/stats") as response:
        return int((await response.json())[provider]["accepted_messages"])


async def _reset(session: aiohttp.ClientSession, url: str) -> None:
    async with session.post(f"{url}/_sim/reset") as response:
        await response.read()


async def measure(url: str, count: int, concurrency: int, rounds: int) -> list[Row]:
    settings = plugin_settings(url, SimulatorConfig())
    twilio, sendgrid, fcm = TwilioSms(settings), SendGridEmail(settings), FcmPush(settings)
    plan: list[tuple[str, Notifier, str, str]] = [
        ("sms", twilio, "twilio", f"twilio {version('twilio')}"),
        ("email", sendgrid, "sendgrid", f"sendgrid {version('sendgrid')}"),
        ("push", fcm, "fcm", f"firebase-admin {version('firebase-admin')}"),
    ]
    rows = []
    connector = aiohttp.TCPConnector(limit=POOL)
    async with aiohttp.ClientSession(connector=connector) as session:
        bare = Bare(session, url, settings)
        prepare = {"sms": bare.sms_jobs, "email": bare.email_jobs, "push": bare.push_jobs}
        try:
            for channel, notifier, provider, sdk in plan:
                batch_list = batches(messages(channel, count), notifier.max_batch)
                row = Row(channel, notifier.name, sdk, notifier.max_batch, [], [], [])
                # one untimed batch each: connections, the SDK's first-use set-up
                await through_notifier(notifier, batch_list[:1], 1)
                await in_flight(prepare[channel](notifier, batch_list[:1]), 1)
                for _ in range(rounds):
                    started = time.perf_counter()
                    build_only(notifier, batch_list)
                    row.build_rates.append(count / (time.perf_counter() - started))
                    jobs = prepare[channel](notifier, batch_list)
                    runs: list[tuple[str, Job, list[float]]] = [
                        ("sdk", functools.partial(through_notifier, notifier, batch_list,
                                                  concurrency), row.sdk_rates),
                        ("bare", functools.partial(in_flight, jobs, concurrency), row.bare_rates),
                    ]  # fmt: skip
                    for label, run, rates in runs:
                        await _reset(session, url)
                        started = time.perf_counter()
                        sent = await run()
                        seconds = time.perf_counter() - started
                        accepted = await _accepted(session, url, provider)
                        if sent != count or accepted != count:
                            raise SystemExit(f"{channel} {label}: {sent} sent, {accepted} "
                                             f"accepted, {count} expected")  # fmt: skip
                        rates.append(count / seconds)
                rows.append(row)
        finally:
            for notifier in (twilio, sendgrid, fcm):
                await notifier.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000, help="per channel and round")
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument("--rounds", type=int, default=3, help="the median is reported")
    args = parser.parse_args()

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    simulator = context.Process(target=_serve, args=(queue,), daemon=True)
    simulator.start()
    try:
        url = queue.get(timeout=30)
        rows = asyncio.run(measure(url, args.messages, args.concurrency, args.rounds))
    finally:
        simulator.terminate()
        simulator.join()

    print(f"{args.messages:,} messages per channel, {args.concurrency} batches in flight, "
          f"median of {args.rounds} rounds, simulator in its own process "
          f"({multiprocessing.cpu_count()} CPUs)")  # fmt: skip
    header = (f"{'channel':<8}{'notifier':<16}{'SDK':<22}{'batch':>6}{'build only':>12}"
              f"{'SDK msg/s':>11}{'bare aiohttp msg/s':>20}{'SDK / bare':>12}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.channel:<8}{r.notifier:<16}{r.sdk:<22}{r.batch:>6}{r.build_rate:>12,.0f}"
              f"{r.sdk_rate:>11,.0f}{r.bare_rate:>20,.0f}"
              f"{r.sdk_rate / r.bare_rate:>12.2f}")  # fmt: skip
    print("build only: the notifier's payloads without sending (msg/s); SDK msg/s includes it")


if __name__ == "__main__":
    main()
