"""The FCM plugin: the v1 send request, and its equivalence with firebase_admin's encoding."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path

import breach_fcm
import pytest
from breach_fcm import FcmPush, PushTooLarge, to_sdk_message
from factories import HOSTILE, make_incident, make_message, make_notice, recording_server

from orchestrator.notifier import Notifier

SETTINGS = {"FCM_PROJECT_ID": "demo-project", "GOOGLE_APPLICATION_CREDENTIALS": "sa.json"}


def test_plugin_registers_the_push_notifier() -> None:
    registered: list[type[Notifier]] = []
    breach_fcm.register_notifiers(register=registered.append)
    assert registered == [FcmPush]
    assert (FcmPush.name, FcmPush.channel, FcmPush.contact) == ("fcm-push", "push", "push_token")
    assert FcmPush.max_batch == 500
    # within the project's 600,000 messages a minute
    assert 5_000 <= FcmPush.default_rate <= 600_000 / 60


def test_missing_settings_name_what_is_missing() -> None:
    assert FcmPush({}).missing_settings() == ["FCM_PROJECT_ID", "GOOGLE_APPLICATION_CREDENTIALS"]
    assert FcmPush(SETTINGS).missing_settings() == []


def test_payload_is_the_v1_send_request() -> None:
    message = make_message("push")
    assert FcmPush(SETTINGS).build_payload(message) == {
        "path": "/v1/projects/demo-project/messages:send",
        "validate_only": False,
        "message": {
            "token": "fcm-token-0001",
            "notification": {"title": message.notice.subject, "body": message.notice.push},
            "data": {
                "incident_id": "inc-2025-0042",
                "delivery_id": "d-0001",
                "step_id": "notify-email",
                "locale": "en",
            },
            "android": {"priority": "high"},
            "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}},
        },
    }


@pytest.mark.parametrize(("mode", "validate_only"), [("sandbox", True), ("live", False)])
def test_sandbox_validates_only(mode: str, validate_only: bool) -> None:
    message = make_message("push", incident=make_incident(mode=mode))
    assert FcmPush(SETTINGS).build_payload(message)["validate_only"] is validate_only


def test_data_values_are_strings_and_hostile_text_stays_data() -> None:
    notice = make_notice("ar", subject=HOSTILE, push=HOSTILE)
    payload = FcmPush(SETTINGS).build_payload(make_message("push", notice=notice))
    assert all(isinstance(v, str) for v in payload["message"]["data"].values())
    assert payload["message"]["data"]["locale"] == "ar"
    assert json.loads(json.dumps(payload))["message"]["notification"]["body"] == HOSTILE


def test_unset_project_shows_as_a_placeholder() -> None:
    assert FcmPush({}).build_payload(make_message("push"))["path"] == (
        "/v1/projects/<FCM_PROJECT_ID>/messages:send"
    )


def test_oversized_notification_is_refused() -> None:
    message = make_message("push", notice=make_notice(push="通知" * 1000))
    with pytest.raises(PushTooLarge, match="shorten"):
        FcmPush(SETTINGS).build_payload(message)


@pytest.mark.parametrize("locale", ["en", "ja", "ar"])
def test_sdk_encoder_produces_the_same_message_json(locale: str) -> None:
    from firebase_admin import messaging

    notice = make_notice(locale, push=HOSTILE if locale == "en" else make_notice(locale).push)
    message = make_message("push", notice=notice)
    payload = FcmPush(SETTINGS).build_payload(message)
    encoded = messaging._MessagingService.encode_message(to_sdk_message(payload["message"]))
    assert encoded == payload["message"]


@pytest.mark.parametrize("mode", ["sandbox", "live"])
def test_sdk_puts_exactly_our_body_on_the_wire(mode: str) -> None:
    import firebase_admin
    from firebase_admin import messaging
    from google.oauth2.credentials import Credentials

    notifier = FcmPush(SETTINGS)
    message = make_message("push", notice=make_notice("ja"), incident=make_incident(mode=mode))
    payload = notifier.build_payload(message)
    reply = {"name": "projects/demo-project/messages/0:1"}
    service = messaging._MessagingService
    original = service.FCM_URL
    with recording_server(reply=reply) as server:
        # the URL is a class attribute read when an app's messaging service is first created
        service.FCM_URL = server.url + "/v1/projects/{0}/messages:send"
        # a static token: no call to Google is made to get one
        credentials = Credentials(token="test-token")  # type: ignore[no-untyped-call]
        app = firebase_admin.initialize_app(
            credentials, {"projectId": "demo-project"}, name=f"wire-{mode}"
        )
        try:
            sent = messaging.send(
                notifier.sdk_message(message), dry_run=payload["validate_only"], app=app
            )
        finally:
            service.FCM_URL = original
            firebase_admin.delete_app(app)
    assert sent == reply["name"]
    (request,) = server.requests
    assert request.path == payload["path"]
    body = {k: v for k, v in payload.items() if k != "path"}
    if not body["validate_only"]:
        del body["validate_only"]  # the SDK omits the default (false)
    assert json.loads(request.body) == body


def test_sdk_conversion_does_not_warn_about_tokens() -> None:
    payload = FcmPush(SETTINGS).build_payload(make_message("push"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_sdk_message(payload["message"])


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_preview_shows_the_notification_escaped_and_in_its_direction() -> None:
    notice = make_notice("ar", push=HOSTILE + " " + "x" * 200)
    parser = _Tags()
    parser.feed(FcmPush(SETTINGS).preview_html(make_message("push", notice=notice)))
    assert not any(tag == "script" for tag, _ in parser.tags)
    card = next(attrs for tag, attrs in parser.tags if tag == "section")
    assert (card["lang"], card["dir"]) == ("ar", "rtl")
    text = "".join(parser.text)
    assert HOSTILE in text and "about 150 show" in text


def test_payload_building_does_not_import_firebase_admin() -> None:
    code = (
        "import sys, breach_fcm\n"
        "from factories import make_message\n"
        "breach_fcm.FcmPush({}).build_payload(make_message('push'))\n"
        "assert 'firebase_admin' not in sys.modules, 'firebase_admin imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
