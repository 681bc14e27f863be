"""Meeting events from the real carillon binary to SQS, SNS (-> SQS), Lambda, EventBridge
(-> rule -> SQS) and a webhook: the whole life of a meeting, and a crash while the targets
are down."""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import websocket

from conftest import (
    MOTO_ACCOUNT,
    REGION,
    WEBHOOK_SECRET,
    dedupe,
    parse,
    signature_ok,
    start_carillon,
    wait_until,
)

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LAMBDA_ARN = f"arn:aws:lambda:{REGION}:{MOTO_ACCOUNT}:function:chime-events"
NETWORK_TYPE_EVENTS = frozenset(
    f"chime:Attendee{what}{how}" for what in ("", "Content") for how in ("Joined", "Left", "Dropped")
)


# ----- the signaling protocol, by hand: 0x05 + protobuf SdkSignalFrame -----


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(frame_type: int, body_tag: int | None = None, body: bytes = b"") -> bytes:
    # SdkSignalFrame: 1 timestamp_ms (varint), 2 type (varint), <body_tag> the body message.
    out = b"\x05" + b"\x08" + varint(int(time.time() * 1000)) + b"\x10" + varint(frame_type)
    if body_tag is not None:
        out += varint(body_tag << 3 | 2) + varint(len(body)) + body
    return out


def join_frame(audio_session_id: int) -> bytes:
    # SdkJoinFrame: 1 protocol_version=2, 3 flags=2 (HAS_STREAM_UPDATE), 6 audio_session_id.
    body = b"\x08\x02" + b"\x18\x02" + b"\x30" + varint(audio_session_id)
    return frame(1, 4, body)


def frame_type_of(data: bytes) -> int | None:
    """Field 2 (the type) of a received frame."""
    i = 1  # skip the 0x05 prefix
    while i < len(data):
        key = 0
        shift = 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        tag, wire = key >> 3, key & 7
        if wire == 0:
            value = 0
            shift = 0
            while True:
                b = data[i]
                i += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            if tag == 2:
                return value
        elif wire == 2:
            length = 0
            shift = 0
            while True:
                b = data[i]
                i += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            return None
    return None


JOIN_ACK, LEAVE, LEAVE_ACK = 2, 9, 10


def expect_frame(ws, wanted: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = ws.recv()
        if isinstance(data, bytes) and data[:1] == b"\x05" and frame_type_of(data) == wanted:
            return
    raise AssertionError(f"no frame of type {wanted}")


def join_and_leave(signaling_url: str, join_token: str) -> None:
    ws = websocket.create_connection(
        signaling_url + "?X-Chime-Control-Protocol-Version=3",
        subprotocols=["_aws_wt_session", join_token],
        timeout=10,
    )
    try:
        ws.send_binary(join_frame(1))
        expect_frame(ws, JOIN_ACK)
        ws.send_binary(frame(LEAVE))
        expect_frame(ws, LEAVE_ACK)
    finally:
        ws.close()


# ----- the AWS side -----


def make_queue(moto, name: str) -> tuple[str, str]:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def aws_env(moto, lambda_stub=None) -> dict[str, str]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto.endpoint,
    }
    if lambda_stub is not None:
        env["AWS_ENDPOINT_URL_LAMBDA"] = lambda_stub.url
    return env


def assert_envelope(event: dict, meeting_id: str, external_meeting_id: str, media_region: str) -> None:
    assert list(event) == [
        "version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail",
    ], list(event)
    assert event["version"] == "0"
    assert GUID.match(event["id"]), event["id"]
    assert event["detail-type"] == "Chime Meeting State Change"
    assert event["source"] == "aws.chime"
    assert event["account"] == "000000000000"
    assert TIME.match(event["time"]), event["time"]
    assert event["region"] == REGION
    assert event["resources"] == []
    d = event["detail"]
    assert d["version"] == "0"
    assert d["eventType"].startswith("chime:")
    assert isinstance(d["timestamp"], int)
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(d["timestamp"] // 1000)) == event["time"]
    assert d["meetingId"] == meeting_id
    assert d["externalMeetingId"] == external_meeting_id
    assert d["mediaRegion"] == media_region
    kind = d["eventType"]
    # The audio session and content-share connection events carry networkType
    # (chime-meetings-api.md §4); nothing else does.
    if kind in NETWORK_TYPE_EVENTS:
        assert d["networkType"] == "Voip", d
    else:
        assert "networkType" not in d, d
    if kind.startswith("chime:Attendee"):
        assert GUID.match(d["attendeeId"].removesuffix("#content")), d
        assert d["externalUserId"]
    else:
        assert "attendeeId" not in d and "externalUserId" not in d


def types_of(events: list[dict]) -> list[str]:
    return sorted(e["detail"]["eventType"] for e in events)


def test_a_meeting_lifecycle_reaches_every_target(moto, webhook, lambda_stub, tmp_path):
    q_direct_url, q_direct_arn = make_queue(moto, "chime-direct")
    q_sns_url, q_sns_arn = make_queue(moto, "chime-via-sns")
    q_bus_url, q_bus_arn = make_queue(moto, "chime-via-eventbridge")
    sns = moto.client("sns")
    topic_arn = sns.create_topic(Name="chime-events")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=q_sns_arn, Attributes={"RawMessageDelivery": "true"}
    )
    events_api = moto.client("events")
    events_api.put_rule(Name="chime", EventPattern=json.dumps({"source": ["aws.chime"]}))
    events_api.put_targets(Rule="chime", Targets=[{"Id": "q", "Arn": q_bus_arn}])

    env = aws_env(moto, lambda_stub) | {
        "CARILLON_WEBHOOKS": webhook.url + "/chime",
        "CARILLON_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CARILLON_EVENTBRIDGE": "1",
    }
    server = start_carillon(tmp_path, env)
    try:
        chime = server.chime()
        external = "events-" + uuid.uuid4().hex[:8]
        out = chime.create_meeting_with_attendees(
            MediaRegion="eu-central-1",
            ExternalMeetingId=external,
            NotificationsConfiguration={
                "SqsQueueArn": q_direct_arn,
                "SnsTopicArn": topic_arn,
                "LambdaFunctionArn": LAMBDA_ARN,
            },
            Attendees=[{"ExternalUserId": "alice"}],
        )
        meeting = out["Meeting"]
        meeting_id = meeting["MeetingId"]
        alice = out["Attendees"][0]
        batch = chime.batch_create_attendee(
            MeetingId=meeting_id, Attendees=[{"ExternalUserId": "bob"}, {"ExternalUserId": "alice"}]
        )
        assert len(batch["Attendees"]) == 2
        # An idempotent repeat adds nobody and reports nothing.
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId="BOB")
        bob = next(a for a in batch["Attendees"] if a["ExternalUserId"] == "bob")
        join_and_leave(meeting["MediaPlacement"]["SignalingUrl"], alice["JoinToken"])
        time.sleep(0.3)  # the leave reaches the control plane asynchronously
        chime.delete_attendee(MeetingId=meeting_id, AttendeeId=bob["AttendeeId"])
        chime.delete_meeting(MeetingId=meeting_id)

        expected = sorted(
            [
                "chime:MeetingStarted",
                "chime:AttendeeAdded",
                "chime:AttendeeAdded",
                "chime:AttendeeAuthorized",
                "chime:AttendeeJoined",
                "chime:AttendeeLeft",
                "chime:AttendeeDeleted",
                "chime:MeetingEnded",
            ]
        )
        collected: dict[str, list[dict]] = {"sqs": [], "sns": [], "eventbridge": []}

        def all_arrived():
            collected["sqs"] += [parse(b) for b in moto.drain(q_direct_url)]
            collected["sns"] += [parse(b) for b in moto.drain(q_sns_url)]
            collected["eventbridge"] += [parse(b) for b in moto.drain(q_bus_url)]
            lambdas = [parse(r["body"]) for r in lambda_stub.snapshot()]
            hooks = [parse(r["body"]) for r in webhook.snapshot()]
            got = {**collected, "lambda": lambdas, "webhook": hooks}
            return all(types_of(dedupe(v)) == expected for v in got.values()) and got

        try:
            got = wait_until("every event at every target", all_arrived)
        except AssertionError:
            got = {**collected, "lambda": [parse(r["body"]) for r in lambda_stub.snapshot()],
                   "webhook": [parse(r["body"]) for r in webhook.snapshot()]}
            summary = {k: types_of(dedupe(v)) for k, v in got.items()}
            raise AssertionError(f"expected {expected} everywhere, got {summary}\n{server.log()}")
        time.sleep(0.5)

        # The same events (same ids) reach every target, each exactly once after dedup.
        reference = {e["id"]: e for e in dedupe(got["webhook"])}
        for target in ("sqs", "sns", "lambda", "webhook"):
            events = dedupe(got[target])
            assert {e["id"] for e in events} == set(reference), target
            for e in events:
                assert e == reference[e["id"]], target
                assert_envelope(e, meeting_id, external, "eu-central-1")
        # EventBridge builds its own envelope around our detail.
        for e in dedupe(got["eventbridge"]):
            assert e["source"] == "aws.chime"
            assert e["detail-type"] == "Chime Meeting State Change"
            assert e["detail"] in [r["detail"] for r in reference.values()]

        events = sorted(reference.values(), key=lambda e: e["detail"]["timestamp"])
        by_type = {}
        for e in events:
            by_type.setdefault(e["detail"]["eventType"], []).append(e["detail"])
        alice_id = alice["AttendeeId"]
        assert {d["externalUserId"] for d in by_type["chime:AttendeeAdded"]} == {"alice", "bob"}
        for kind in ("chime:AttendeeAuthorized", "chime:AttendeeJoined", "chime:AttendeeLeft"):
            assert by_type[kind][0]["attendeeId"] == alice_id
            assert by_type[kind][0]["externalUserId"] == "alice"
        assert by_type["chime:AttendeeDeleted"][0]["attendeeId"] == bob["AttendeeId"]
        # A plausible order, by the event timestamps.
        ts = lambda kind: by_type[kind][0]["timestamp"]  # noqa: E731
        stamps = [e["detail"]["timestamp"] for e in events]
        assert ts("chime:MeetingStarted") == min(stamps)
        assert ts("chime:MeetingEnded") == max(stamps)
        assert ts("chime:AttendeeAuthorized") <= ts("chime:AttendeeJoined") <= ts("chime:AttendeeLeft")

        # Lambda: Invoke with InvocationType=Event on the function named by the ARN.
        for r in lambda_stub.snapshot():
            assert r["path"] == f"/2015-03-31/functions/{LAMBDA_ARN.replace(':', '%3A')}/invocations", r["path"]
            assert r["headers"]["x-amz-invocation-type"] == "Event"
        # Webhook: every delivery signed; a tampered body does not verify.
        for r in webhook.snapshot():
            assert r["path"] == "/chime"
            assert signature_ok(r["headers"], r["body"])
            assert not signature_ok(r["headers"], r["body"].replace(b'"version":"0"', b'"version":"1"', 1))
            assert not signature_ok(r["headers"], r["body"], secret="wrong")
    finally:
        server.stop()


def test_a_crash_while_the_targets_are_down_loses_nothing(moto, webhook, tmp_path):
    # The queue does not exist yet (SQS refuses: QueueDoesNotExist) and the webhook answers 503.
    queue_name = "chime-late-" + uuid.uuid4().hex[:6]
    queue_arn = f"arn:aws:sqs:{REGION}:{MOTO_ACCOUNT}:{queue_name}"
    webhook.down = True
    env = aws_env(moto) | {
        "CARILLON_WEBHOOKS": webhook.url + "/chime",
        "CARILLON_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    server = start_carillon(tmp_path, env)
    chime = server.chime()
    meeting = chime.create_meeting(
        MediaRegion=REGION,
        ExternalMeetingId="crash",
        NotificationsConfiguration={"SqsQueueArn": queue_arn},
    )["Meeting"]
    meeting_id = meeting["MeetingId"]
    for i in range(15):
        chime.create_attendee(MeetingId=meeting_id, ExternalUserId=f"user-{i}")
    chime.delete_meeting(MeetingId=meeting_id)
    expected_count = 1 + 15 + 1
    wait_until("a refused delivery", lambda: webhook.refused > 0)
    time.sleep(0.5)
    refused_log = server.log()
    server.kill()
    assert "event delivery failed" in refused_log, refused_log

    # Restart on the same data directory; then bring both targets up.
    server = start_carillon(tmp_path, env)
    try:
        time.sleep(1.0)
        queue_url = moto.client("sqs").create_queue(QueueName=queue_name)["QueueUrl"]
        webhook.down = False
        sqs_events: list[dict] = []

        def arrived():
            sqs_events.extend(parse(b) for b in moto.drain(queue_url))
            hooks = dedupe([parse(r["body"]) for r in webhook.snapshot()])
            return len(dedupe(sqs_events)) >= expected_count and len(hooks) >= expected_count

        try:
            wait_until("the backlog at both targets", arrived, timeout=90)
        except AssertionError:
            raise AssertionError(
                f"sqs {len(dedupe(sqs_events))}, webhook {len(dedupe([parse(r['body']) for r in webhook.snapshot()]))}"
                f" of {expected_count}\n{server.log()}"
            )
        time.sleep(1.0)
        sqs_events.extend(parse(b) for b in moto.drain(queue_url))
        hooks = [parse(r["body"]) for r in webhook.snapshot()]
        for events in (dedupe(sqs_events), dedupe(hooks)):
            assert len(events) == expected_count, "nothing lost, nothing invented"
            kinds = types_of(events)
            assert kinds.count("chime:AttendeeAdded") == 15
            assert kinds.count("chime:MeetingStarted") == 1
            assert kinds.count("chime:MeetingEnded") == 1
            for e in events:
                assert_envelope(e, meeting_id, "crash", REGION)
        assert {e["id"] for e in dedupe(sqs_events)} == {e["id"] for e in dedupe(hooks)}
        if os.environ.get("EVENTS_DEBUG"):
            print(server.log())
        for r in webhook.snapshot():
            assert signature_ok(r["headers"], r["body"])
    finally:
        server.stop()


def test_hand_encoded_frames_decode():
    # The hand-encoded JOIN and LEAVE frames round-trip through the tiny decoder.
    assert join_frame(7)[:1] == b"\x05"
    assert frame_type_of(join_frame(7)) == 1
    assert frame_type_of(frame(LEAVE)) == LEAVE


def test_the_envelope_check_follows_the_reference_for_network_type():
    # networkType on the audio and content-share connection events, and only there.
    meeting_id = str(uuid.uuid4())
    attendee_id = str(uuid.uuid4())

    def event(kind: str, **extra) -> dict:
        ts = 1_774_094_400_123
        detail = {"version": "0", "eventType": kind, "timestamp": ts, "meetingId": meeting_id,
                  "externalMeetingId": "standup", **extra, "mediaRegion": REGION}
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Chime Meeting State Change",
                "source": "aws.chime", "account": "000000000000",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts // 1000)),
                "region": REGION, "resources": [], "detail": detail}

    content = {"attendeeId": f"{attendee_id}#content", "externalUserId": "alice#content"}
    plain = {"attendeeId": attendee_id, "externalUserId": "alice"}
    for kind in ("Joined", "Left", "Dropped"):
        assert_envelope(event(f"chime:AttendeeContent{kind}", **content, networkType="Voip"),
                        meeting_id, "standup", REGION)
        assert_envelope(event(f"chime:Attendee{kind}", **plain, networkType="Voip"), meeting_id, "standup", REGION)
    for kind, who in (("chime:AttendeeContentVideoStarted", content), ("chime:AttendeeVideoStarted", plain),
                      ("chime:AttendeeAdded", plain)):
        assert_envelope(event(kind, **who), meeting_id, "standup", REGION)
        try:
            assert_envelope(event(kind, **who, networkType="Voip"), meeting_id, "standup", REGION)
        except AssertionError:
            pass
        else:
            raise AssertionError(f"{kind} must not carry networkType")
    try:
        assert_envelope(event("chime:AttendeeContentJoined", **content), meeting_id, "standup", REGION)
    except (AssertionError, KeyError):
        pass
    else:
        raise AssertionError("AttendeeContentJoined must carry networkType")
