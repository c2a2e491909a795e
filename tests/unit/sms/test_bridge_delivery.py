"""The webhook bridge in-process: handing over (dedup, retries, timeouts), replies and sends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.protocols.errors import LocalProtocolError
from tests.unit.layers.conftest import until

from .bridge_harness import PROVIDERS, SUCCESS, Harness, Recorder, hook


def test_a_redelivery_is_acknowledged_without_reaching_the_application_again(harness: Harness,
                                                                             recorder: Recorder) -> None:
    first = hook(harness, "twilio", message_id="SM1")
    assert harness.post(first)[0] == 200
    assert harness.post(first)[0] == 200
    assert harness.post(hook(harness, "twilio", message_id="SM1"))[0] == 200  # re-signed retry
    assert len(recorder.deliveries) == 1
    assert harness.post(hook(harness, "twilio", message_id="SM2"))[0] == 200
    assert len(recorder.deliveries) == 2


def test_same_id_on_two_accounts_is_two_messages(harness: Harness, recorder: Recorder) -> None:
    assert harness.post(hook(harness, "generic", message_id="X"))[0] == 200
    assert harness.post(hook(harness, "twilio", message_id="X"))[0] == 200
    assert len(recorder.deliveries) == 2


async def failing(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_application_failure_answers_the_retry_status_and_the_retry_is_delivered(provider: str) -> None:
    attempts: list[int] = []

    async def flaky(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        await send({"type": "sms.ack"})

    recorder = Recorder(flaky)
    h = Harness(recorder)
    try:
        message = hook(h, provider, message_id="m-flaky")
        status, headers, _ = h.post(message)
        assert status == 503 and headers.get("retry-after") == "60"
        assert h.post(message)[0] == SUCCESS[provider]
        assert h.post(message)[0] == SUCCESS[provider]
        assert len(recorder.deliveries) == 2
    finally:
        h.close()


def test_timeout_answers_retry_and_a_late_ack_still_counts(recorder: Recorder) -> None:
    async def slow(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)
        await send({"type": "sms.reply", "text": "late but here"})
        await send({"type": "sms.ack"})

    recorder.behaviour = slow
    h = Harness(recorder, consumer_timeout=0.1)
    try:
        message = hook(h, "twilio", message_id="SMslow")
        assert h.post(message)[0] == 503
        # the late reply goes by REST once the late ack settles the outcome
        h.loop.run_until_complete(until(lambda: bool(h.senders["twilio"].requests), 5))
        # Handled after all: the redelivery is acknowledged, not handed over again...
        status, _, body = h.post(message)
        assert status == 200 and b"<Message>" not in body
        assert len(recorder.deliveries) == 1
        # ...and the reply that could not travel in the (failed) answer went by REST.
        [sent] = h.senders["twilio"].requests
        assert b"late+but+here" in sent.body and b"To=%2B447400123456" in sent.body
    finally:
        h.close()


def test_telnyx_gets_its_answer_within_its_two_second_deadline(recorder: Recorder) -> None:
    async def slow(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(2.5)  # past Telnyx's deadline, well within the consumer timeout
        await send({"type": "sms.ack"})

    recorder.behaviour = slow
    h = Harness(recorder, consumer_timeout=30.0)
    try:
        # Answered before the application's acknowledgement: the retry status, not success.
        assert h.post(hook(h, "telnyx"))[0] == 503
    finally:
        h.close()


def test_a_retry_while_the_first_is_in_flight_waits_for_it(recorder: Recorder) -> None:
    async def slow(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)
        await send({"type": "sms.ack"})

    recorder.behaviour = slow
    h = Harness(recorder)
    try:
        message = hook(h, "generic", message_id="g-dup")

        async def both() -> list[Any]:
            return await asyncio.gather(h.arequest("POST", message.url, message.headers, message.body),
                                        h.arequest("POST", message.url, message.headers, message.body))

        results = h.loop.run_until_complete(both())
        assert [r[0] for r in results] == [200, 200]
        assert len(recorder.deliveries) == 1
    finally:
        h.close()


def test_inline_replies_in_twiml_plivo_xml_and_generic_json(recorder: Recorder) -> None:
    async def echo(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "sms.reply", "text": "one <&>"})
        await send({"type": "sms.reply", "text": "two"})
        await send({"type": "sms.ack"})

    recorder.behaviour = echo
    h = Harness(recorder)
    try:
        _, head, body = h.post(hook(h, "twilio"))
        assert head["content-type"].startswith("text/xml")
        assert body.endswith(b"<Response><Message>one &lt;&amp;&gt;</Message><Message>two</Message></Response>")
        _, _, body = h.post(hook(h, "plivo"))
        assert b'<Message src="441134960000" dst="447400123456" type="sms">two</Message>' in body
        _, _, body = h.post(hook(h, "generic"))
        assert json.loads(body) == {"replies": [{"to": "+447400123456", "text": "one <&>"},
                                                {"to": "+447400123456", "text": "two"}]}
        assert all(not s.requests for s in h.senders.values())
    finally:
        h.close()


@pytest.mark.parametrize("provider", ["vonage", "telnyx"])
def test_replies_without_inline_support_go_by_rest_and_the_result_comes_back(recorder: Recorder,
                                                                             provider: str) -> None:
    async def echo(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["extensions"]["sms.reply"] == {"inline": False}
        await send({"type": "sms.reply", "text": "thanks", "id": "r1"})
        await send({"type": "sms.ack"})

    recorder.behaviour = echo
    h = Harness(recorder)
    try:
        assert h.post(hook(h, provider))[0] == SUCCESS[provider]
        h.wait_for(lambda: len(recorder.later) == 2)
        [request] = h.senders[provider].requests
        if provider == "vonage":
            assert b"from=441134960000" in request.body and b"to=447400123456" in request.body
        else:
            assert json.loads(request.body)["from"] == "+441134960000"
        result, disconnect = recorder.later
        assert result["type"] == "sms.send.result" and result["id"] == "r1" and result["ok"] is True
        assert disconnect == {"type": "sms.disconnect"}
    finally:
        h.close()


def test_sms_send_and_its_errors_come_back_to_the_application(recorder: Recorder) -> None:
    async def sender(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "sms.send", "to": "+14155550199", "text": "hi", "id": 7})
        await send({"type": "sms.send", "to": "not a number", "text": "hi", "id": 8})
        await send({"type": "sms.ack"})

    recorder.behaviour = sender
    h = Harness(recorder)
    h.senders["generic"].answer = (429, b'{"error": "slow down", "code": "rate"}')
    try:
        assert h.post(hook(h, "generic"))[0] == 200
        h.wait_for(lambda: {"type": "sms.disconnect"} in recorder.later)
        results = {m["id"]: m for m in recorder.later if m["type"] == "sms.send.result"}
        assert results[7]["ok"] is False and results[7]["error"] == {
            "http_status": 429, "code": "rate", "message": "slow down", "retryable": True}
        assert results[8]["ok"] is False and "not a phone number" in results[8]["error"]["message"]
        assert recorder.later[-1] == {"type": "sms.disconnect"}
        [request] = h.senders["generic"].requests
        assert request.url == "https://api.example.net/send"
        assert json.loads(request.body) == {"to": "+14155550199", "from": "+441134960000", "text": "hi"}
    finally:
        h.close()


def test_bad_messages_from_the_application_raise_in_send(recorder: Recorder) -> None:
    errors: list[str] = []

    async def misuse(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        for message in ({"type": "sms.reply", "text": b"bytes"}, {"type": "sms.send", "text": "x"},
                        {"type": "sms.send", "to": "+1415", "text": "x", "media_urls": "u"},
                        {"type": "http.response.start"}, {"type": "sms.reply", "text": "bell \x07"}):
            try:
                await send(message)
            except LocalProtocolError as exc:
                errors.append(exc.message)
        await send({"type": "sms.ack"})

    recorder.behaviour = misuse
    h = Harness(recorder)
    try:
        assert h.post(hook(h, "twilio"))[0] == 200
        assert len(errors) == 5
    finally:
        h.close()


def test_replies_to_an_alphanumeric_sender_or_to_a_status_are_refused(recorder: Recorder) -> None:
    errors: list[str] = []

    async def reply(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await send({"type": "sms.reply", "text": "x"})
        except LocalProtocolError as exc:
            errors.append(exc.message)
        await send({"type": "sms.ack"})

    recorder.behaviour = reply
    h = Harness(recorder)
    try:
        assert h.post(hook(h, "generic", from_="MyBank"))[0] == 200
        assert recorder.deliveries[0][0]["from_kind"] == "alphanumeric"
        assert h.post(hook(h, "generic", kind="status"))[0] == 200
        assert "not a number" in errors[0] and "status" in errors[1]
    finally:
        h.close()


def test_returning_without_ack_counts_as_handled() -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

    h = Harness(bare)
    try:
        message = hook(h, "generic", message_id="bare")
        assert h.post(message)[0] == 200
    finally:
        h.close()


@pytest.mark.parametrize(("policy", "expected"), [("drop", 200), ("retry", 503)])
def test_unrouted_messages(policy: str, expected: int) -> None:
    from gateway.routing import SMSFromRouter, phone

    recorder = Recorder()
    h = Harness(SMSFromRouter([phone("+44", recorder)]), unrouted=policy)
    try:
        assert h.post(hook(h, "generic", from_="+14155550123"))[0] == expected
        assert h.post(hook(h, "generic", from_="+447400123456"))[0] == 200
        assert [s["from"] for s, _ in recorder.deliveries] == ["+447400123456"]
    finally:
        h.close()


def test_other_events_are_acknowledged_and_dropped(harness: Harness, recorder: Recorder) -> None:
    import time

    from gateway.protocols.sms.testhook import _telnyx

    other = _telnyx(harness.url("telnyx"), {"data": {"event_type": "number.updated", "payload": {}}},
                    harness.credentials("telnyx"), int(time.time()))
    assert harness.post(other)[0] == 200
    assert recorder.deliveries == []


def test_verification_off_accepts_unsigned(recorder: Recorder) -> None:
    h = Harness(recorder, verify=False)
    try:
        body = json.dumps({"type": "message", "id": "u1", "from": "+447400123456", "to": "+441134960000",
                           "text": "unsigned"}).encode()
        assert h.request("POST", h.url("generic"), [("content-type", "application/json")], body)[0] == 200
        assert recorder.deliveries[0][1]["text"] == "unsigned"
    finally:
        h.close()


def test_an_instance_that_never_handles_is_cancelled(recorder: Recorder) -> None:
    cancelled: list[bool] = []

    async def hang(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    recorder.behaviour = hang
    h = Harness(recorder, consumer_timeout=0.05, application_close=0.1)
    try:
        assert h.post(hook(h, "generic"))[0] == 503
        h.loop.run_until_complete(until(lambda: bool(cancelled), 5))
        assert cancelled == [True]
    finally:
        h.close()


def vonage_part(h: Harness, number: int, total: int, text: str, ident: str) -> Any:
    import time

    from gateway.protocols.sms.testhook import _vonage

    fields = {"messageId": ident, "msisdn": "447400123456", "to": "441134960000", "text": text, "type": "text",
              "concat": "true", "concat-ref": "ref9", "concat-total": str(total), "concat-part": str(number)}
    return _vonage(h.url("vonage"), fields, h.credentials("vonage"), int(time.time()))


def test_split_vonage_message_is_joined_and_handed_over_once(recorder: Recorder) -> None:
    attempts: list[str] = []

    async def fail_once(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        attempts.append(event["text"])
        if len(attempts) == 1:
            raise RuntimeError("not this time")
        await send({"type": "sms.ack"})

    recorder.behaviour = fail_once
    h = Harness(recorder)
    try:
        second = vonage_part(h, 2, 2, "world", "p-2")
        assert h.post(second)[0] == 204  # stored, acknowledged
        assert recorder.deliveries == []
        first = vonage_part(h, 1, 2, "hello ", "p-1")
        assert h.post(first)[0] == 503  # complete, but the application failed: Vonage resends part 1
        assert h.post(second)[0] == 204  # a redelivery of a stored part is acknowledged
        assert h.post(first)[0] == 204  # the resend completes it again, and this time it is handled
        assert attempts == ["hello world", "hello world"]
        scope, event = recorder.deliveries[-1]
        assert scope["message_id"] == "p-1" and event["segments"] == 2
        assert h.post(first)[0] == 204 and h.post(second)[0] == 204
        assert len(recorder.deliveries) == 2 and len(h.bridge.concat) == 0
    finally:
        h.close()


def test_account_paths_ignore_root_path_and_trailing_slash(harness: Harness, recorder: Recorder) -> None:
    assert harness.bridge.account_for({"path": "/api/generic/", "root_path": "/api"}).name == "generic"
    assert harness.bridge.account_for({"path": "/generic", "root_path": ""}).name == "generic"
    assert harness.bridge.account_for({"path": "/api/other", "root_path": "/api"}) is None


@pytest.mark.parametrize("provider", ["twilio", "vonage"])
def test_replies_of_a_failed_attempt_are_dropped(recorder: Recorder, provider: str) -> None:
    async def reply_then_fail(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        if event["text"] == "marker":  # acknowledged, then a reply: that one goes by REST at once
            await send({"type": "sms.ack"})
            await send({"type": "sms.reply", "text": "marker"})
            return
        await send({"type": "sms.reply", "text": "premature"})
        for _ in range(20):  # loop passes in which a reply sent at once would go out
            await asyncio.sleep(0)
        assert h.senders[provider].requests == []  # held until the outcome
        raise RuntimeError("failed after replying")

    recorder.behaviour = reply_then_fail
    h = Harness(recorder)
    try:
        status, _, body = h.post(hook(h, provider, text="hello", message_id="m-failing"))
        assert status == 503 and b"premature" not in body
        # A later message's reply is the marker: once it went out, a dropped reply would have too.
        assert h.post(hook(h, provider, text="marker", message_id="m-marker"))[0] == SUCCESS[provider]
        h.wait_for(lambda: bool(h.senders[provider].requests))
        [request] = h.senders[provider].requests
        assert b"marker" in request.body and b"premature" not in request.body
    finally:
        h.close()


def test_replies_after_the_ack_go_by_rest_at_once(recorder: Recorder) -> None:
    async def late(scope: dict[str, Any], event: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "sms.ack"})
        await send({"type": "sms.reply", "text": "after", "id": "late"})

    recorder.behaviour = late
    h = Harness(recorder)
    try:
        status, _, body = h.post(hook(h, "twilio"))
        h.wait_for(lambda: any(m["type"] == "sms.send.result" for m in recorder.later))
        assert status == 200 and b"<Message>" not in body
        [request] = h.senders["twilio"].requests
        assert b"Body=after" in request.body
        assert [m["id"] for m in recorder.later if m["type"] == "sms.send.result"] == ["late"]
    finally:
        h.close()
