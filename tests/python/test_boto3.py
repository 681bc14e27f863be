"""The whole Chime SDK Meetings control plane through the unmodified boto3 client."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from conftest import ACCOUNT, NO_SUCH_ID, REGION

GUID = re.compile(r"^[a-f0-9]{8}(-[a-f0-9]{4}){3}-[a-f0-9]{12}$")
DEFAULT_CAPS = {"Audio": "SendReceive", "Video": "SendReceive", "Content": "SendReceive"}
FEATURES = {
    "Audio": {"EchoReduction": "AVAILABLE"},
    "Video": {"MaxResolution": "HD"},
    "Content": {"MaxResolution": "FHD"},
    "Attendee": {"MaxCount": 50},
}


def new_meeting(client, **kwargs):
    params = {"MediaRegion": "us-east-1", "ExternalMeetingId": "m-" + uuid.uuid4().hex[:8]}
    params.update(kwargs)
    return client.create_meeting(**params)["Meeting"]


def assert_error(excinfo, code: str, status: int):
    """The ClientError carries the exception name, the HTTP status and a request id."""
    response = excinfo.value.response
    assert response["Error"]["Code"] == code, response
    assert response["Error"]["Message"], response
    metadata = response["ResponseMetadata"]
    assert metadata["HTTPStatusCode"] == status, response
    assert metadata["RequestId"], response
    # The modeled body member RequestId matches the x-amzn-RequestId header.
    assert response.get("RequestId", metadata["RequestId"]) == metadata["RequestId"], response
    return response


def walk_nulls(value, path="$"):
    """Paths of JSON nulls anywhere in a decoded body."""
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, member in value.items():
            yield from walk_nulls(member, f"{path}.{key}")
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from walk_nulls(member, f"{path}[{index}]")


def decode_join_token(token: str) -> str:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), f"not unpadded base64url: {token}"
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


# --- meetings ----------------------------------------------------------------------------------


def test_create_and_get_meeting(server, client):
    created = client.create_meeting(
        ClientRequestToken="create-get-1",
        MediaRegion="eu-west-2",
        ExternalMeetingId="Weekly «sync» #1",
        MeetingHostId="host-user",
        MeetingFeatures=FEATURES,
        Tags=[{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "ci"}],
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert created["ResponseMetadata"]["RequestId"]
    meeting = created["Meeting"]
    meeting_id = meeting["MeetingId"]
    assert GUID.match(meeting_id), meeting_id
    assert meeting["ExternalMeetingId"] == "Weekly «sync» #1"
    assert meeting["MediaRegion"] == "eu-west-2"
    assert meeting["MeetingHostId"] == "host-user"
    assert meeting["MeetingFeatures"] == FEATURES
    assert meeting["MeetingArn"] == f"arn:aws:chime:{REGION}:{ACCOUNT}:meeting/{meeting_id}"
    assert "PrimaryMeetingId" not in meeting

    got = client.get_meeting(MeetingId=meeting_id)["Meeting"]
    assert got == meeting
    placement = got["MediaPlacement"]
    assert placement["SignalingUrl"] == f"ws://127.0.0.1:{server.port}/control/{meeting_id}"
    assert placement["AudioHostUrl"] == server.media
    assert placement["EventIngestionUrl"] == f"{server.url}/v1/client-events"
    for key in (
        "AudioFallbackUrl",
        "TurnControlUrl",
        "ScreenDataUrl",
        "ScreenSharingUrl",
        "ScreenViewingUrl",
    ):
        assert placement[key], key

    tags = client.list_tags_for_resource(ResourceARN=meeting["MeetingArn"])["Tags"]
    assert sorted(tags, key=lambda t: t["Key"]) == [
        {"Key": "env", "Value": "ci"},
        {"Key": "team", "Value": "blue"},
    ]


def test_optional_members_are_absent_not_null(raw_bodies):
    client, raw = raw_bodies
    meeting = client.create_meeting(MediaRegion="us-east-1", ExternalMeetingId="plain")["Meeting"]
    got = client.get_meeting(MeetingId=meeting["MeetingId"])["Meeting"]
    for parsed in (meeting, got):
        assert "MeetingFeatures" not in parsed
        assert "PrimaryMeetingId" not in parsed
        assert "MeetingHostId" not in parsed
    for operation in ("CreateMeeting", "GetMeeting"):
        body = json.loads(raw.last(operation))
        assert list(walk_nulls(body)) == [], body
        assert "MeetingFeatures" not in body["Meeting"], body


def test_idempotent_create_meeting(client):
    params = {
        "ClientRequestToken": "idem-" + uuid.uuid4().hex[:8],
        "MediaRegion": "us-west-2",
        "ExternalMeetingId": "standup",
    }
    first = client.create_meeting(**params)["Meeting"]
    again = client.create_meeting(**params)["Meeting"]
    assert again["MeetingId"] == first["MeetingId"]
    assert again == first
    # boto3 fills ClientRequestToken itself when it is omitted: every call is a new meeting.
    a = new_meeting(client, ExternalMeetingId="x1")
    b = new_meeting(client, ExternalMeetingId="x1")
    assert a["MeetingId"] != b["MeetingId"]


def test_replica_meetings(client):
    primary = new_meeting(client, MediaRegion="us-west-2", ExternalMeetingId="town-hall")
    replica = new_meeting(
        client,
        MediaRegion="eu-central-1",
        ExternalMeetingId="town-hall-eu",
        PrimaryMeetingId=primary["MeetingId"],
    )
    assert replica["PrimaryMeetingId"] == primary["MeetingId"]
    got = client.get_meeting(MeetingId=replica["MeetingId"])["Meeting"]
    assert got["PrimaryMeetingId"] == primary["MeetingId"]
    assert got["MediaRegion"] == "eu-central-1"
    assert "PrimaryMeetingId" not in client.get_meeting(MeetingId=primary["MeetingId"])["Meeting"]

    client.delete_meeting(MeetingId=primary["MeetingId"])
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=replica["MeetingId"])
    assert_error(excinfo, "NotFoundException", 404)


# --- attendees ---------------------------------------------------------------------------------


def test_attendee_lifecycle(client):
    meeting = new_meeting(client, ExternalMeetingId="attendees")
    meeting_id = meeting["MeetingId"]

    alice = client.create_attendee(MeetingId=meeting_id, ExternalUserId="alice")["Attendee"]
    alice_id = alice["AttendeeId"]
    assert GUID.match(alice_id), alice_id
    assert alice["ExternalUserId"] == "alice"
    assert alice["Capabilities"] == DEFAULT_CAPS
    decoded = decode_join_token(alice["JoinToken"])
    token_id, _, secret = decoded.partition(":")
    assert token_id == alice_id
    assert len(secret) >= 32, decoded

    # BatchCreateAttendee: one item over the 64-char limit fails alone (botocore checks only
    # the minimum length, so the server is the one to refuse it).
    too_long = "u" * 65
    batch = client.batch_create_attendee(
        MeetingId=meeting_id,
        Attendees=[
            {"ExternalUserId": "bob"},
            {
                "ExternalUserId": "viewer",
                "Capabilities": {"Audio": "Receive", "Video": "Receive", "Content": "None"},
            },
            {"ExternalUserId": too_long},
        ],
    )
    assert batch["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [a["ExternalUserId"] for a in batch["Attendees"]] == ["bob", "viewer"]
    assert len(batch["Errors"]) == 1
    error = batch["Errors"][0]
    assert error["ExternalUserId"] == too_long
    assert error["ErrorCode"] == "BadRequest"
    assert error["ErrorMessage"]
    bob, viewer = batch["Attendees"]
    assert bob["Capabilities"] == DEFAULT_CAPS
    assert viewer["Capabilities"] == {"Audio": "Receive", "Video": "Receive", "Content": "None"}

    got = client.get_attendee(MeetingId=meeting_id, AttendeeId=alice_id)["Attendee"]
    assert got == alice

    listed = client.list_attendees(MeetingId=meeting_id)
    assert [a["AttendeeId"] for a in listed["Attendees"]] == [
        alice_id,
        bob["AttendeeId"],
        viewer["AttendeeId"],
    ]
    assert "NextToken" not in listed

    updated = client.update_attendee_capabilities(
        MeetingId=meeting_id,
        AttendeeId=bob["AttendeeId"],
        Capabilities={"Audio": "Receive", "Video": "None", "Content": "None"},
    )["Attendee"]
    assert updated["AttendeeId"] == bob["AttendeeId"]
    assert updated["Capabilities"] == {"Audio": "Receive", "Video": "None", "Content": "None"}

    response = client.batch_update_attendee_capabilities_except(
        MeetingId=meeting_id,
        ExcludedAttendeeIds=[{"AttendeeId": alice_id}],
        Capabilities={"Audio": "Send", "Video": "Send", "Content": "Send"},
    )
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    for attendee in client.list_attendees(MeetingId=meeting_id)["Attendees"]:
        expected = DEFAULT_CAPS if attendee["AttendeeId"] == alice_id else {
            "Audio": "Send",
            "Video": "Send",
            "Content": "Send",
        }
        assert attendee["Capabilities"] == expected, attendee

    deleted = client.delete_attendee(MeetingId=meeting_id, AttendeeId=bob["AttendeeId"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_attendee(MeetingId=meeting_id, AttendeeId=bob["AttendeeId"])
    assert_error(excinfo, "NotFoundException", 404)
    remaining = client.list_attendees(MeetingId=meeting_id)["Attendees"]
    assert [a["AttendeeId"] for a in remaining] == [alice_id, viewer["AttendeeId"]]

    deleted = client.delete_meeting(MeetingId=meeting_id)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=meeting_id)
    assert_error(excinfo, "NotFoundException", 404)
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_attendee(MeetingId=meeting_id, AttendeeId=alice_id)


def test_list_attendees_pages_over_250(client):
    # botocore ships no paginator for this operation: callers loop on NextToken themselves.
    assert not client.can_paginate("list_attendees")
    meeting_id = new_meeting(client, ExternalMeetingId="big")["MeetingId"]
    created = []
    for start in range(0, 250, 100):
        batch = client.batch_create_attendee(
            MeetingId=meeting_id,
            Attendees=[{"ExternalUserId": f"user-{n:03}"} for n in range(start, min(start + 100, 250))],
        )
        assert batch["Errors"] == []
        created += [a["AttendeeId"] for a in batch["Attendees"]]
    assert len(created) == 250

    seen, page_sizes, kwargs = [], [], {}
    while True:
        page = client.list_attendees(MeetingId=meeting_id, MaxResults=100, **kwargs)
        page_sizes.append(len(page["Attendees"]))
        seen += [a["AttendeeId"] for a in page["Attendees"]]
        if "NextToken" not in page:
            break
        assert page["NextToken"]
        kwargs = {"NextToken": page["NextToken"]}
        assert len(page_sizes) < 10, "pagination does not end"
    assert page_sizes == [100, 100, 50]
    assert seen == created

    # Small pages with a token that needs URL-encoding still walk the same list.
    seen_small, kwargs = [], {}
    for _ in range(300):
        page = client.list_attendees(MeetingId=meeting_id, MaxResults=37, **kwargs)
        seen_small += [a["AttendeeId"] for a in page["Attendees"]]
        if "NextToken" not in page:
            break
        kwargs = {"NextToken": page["NextToken"]}
    assert seen_small == created

    with pytest.raises(client.exceptions.LimitExceededException) as excinfo:
        client.create_attendee(MeetingId=meeting_id, ExternalUserId="one-too-many")
    assert_error(excinfo, "LimitExceededException", 400)


def test_create_meeting_with_attendees(client):
    params = {
        "ClientRequestToken": "cmwa-" + uuid.uuid4().hex[:8],
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": "with-attendees",
        "Tags": [{"Key": "kind", "Value": "cmwa"}],
        "Attendees": [
            {"ExternalUserId": "alice"},
            {
                "ExternalUserId": "bob",
                "Capabilities": {"Audio": "SendReceive", "Video": "None", "Content": "None"},
            },
            {"ExternalUserId": "aws:reserved-prefix"},
        ],
    }
    first = client.create_meeting_with_attendees(**params)
    meeting = first["Meeting"]
    assert meeting["ExternalMeetingId"] == "with-attendees"
    assert [a["ExternalUserId"] for a in first["Attendees"]] == ["alice", "bob"]
    assert first["Attendees"][0]["Capabilities"] == DEFAULT_CAPS
    assert first["Attendees"][1]["Capabilities"] == {
        "Audio": "SendReceive",
        "Video": "None",
        "Content": "None",
    }
    assert len(first["Errors"]) == 1
    assert first["Errors"][0]["ExternalUserId"] == "aws:reserved-prefix"
    assert first["Errors"][0]["ErrorCode"]
    for attendee in first["Attendees"]:
        assert decode_join_token(attendee["JoinToken"]).startswith(attendee["AttendeeId"] + ":")

    again = client.create_meeting_with_attendees(**params)
    assert again["Meeting"]["MeetingId"] == meeting["MeetingId"]
    assert again["Attendees"] == first["Attendees"]

    listed = client.list_attendees(MeetingId=meeting["MeetingId"])["Attendees"]
    assert [a["AttendeeId"] for a in listed] == [a["AttendeeId"] for a in first["Attendees"]]
    assert client.list_tags_for_resource(ResourceARN=meeting["MeetingArn"])["Tags"] == [
        {"Key": "kind", "Value": "cmwa"}
    ]


# --- transcription and tags --------------------------------------------------------------------


def test_transcription(client):
    meeting_id = new_meeting(client, ExternalMeetingId="transcribed")["MeetingId"]
    config = {"EngineTranscribeSettings": {"LanguageCode": "en-US", "Region": "auto"}}
    # A second start is a configuration update, not an error.
    for _ in range(2):
        started = client.start_meeting_transcription(
            MeetingId=meeting_id, TranscriptionConfiguration=config
        )
        assert started["ResponseMetadata"]["HTTPStatusCode"] == 200
    stopped = client.stop_meeting_transcription(MeetingId=meeting_id)
    assert stopped["ResponseMetadata"]["HTTPStatusCode"] == 200
    medical = {
        "EngineTranscribeMedicalSettings": {
            "LanguageCode": "en-US",
            "Specialty": "PRIMARYCARE",
            "Type": "CONVERSATION",
        }
    }
    client.start_meeting_transcription(MeetingId=meeting_id, TranscriptionConfiguration=medical)
    client.stop_meeting_transcription(MeetingId=meeting_id)

    with pytest.raises(client.exceptions.BadRequestException) as excinfo:
        client.start_meeting_transcription(MeetingId=meeting_id, TranscriptionConfiguration={})
    assert_error(excinfo, "BadRequestException", 400)
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.stop_meeting_transcription(MeetingId=NO_SUCH_ID)
    assert_error(excinfo, "NotFoundException", 404)


def test_tags(client):
    meeting = new_meeting(client, ExternalMeetingId="tags", Tags=[{"Key": "team", "Value": "blue"}])
    arn = meeting["MeetingArn"]
    tagged = client.tag_resource(
        ResourceARN=arn,
        Tags=[{"Key": "env", "Value": "ci"}, {"Key": "team", "Value": "green"}],
    )
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    untagged = client.untag_resource(ResourceARN=arn, TagKeys=["env", "absent"])
    assert untagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    tags = client.list_tags_for_resource(ResourceARN=arn)["Tags"]
    assert tags == [{"Key": "team", "Value": "green"}]


# --- errors ------------------------------------------------------------------------------------


def test_not_found(client):
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=NO_SUCH_ID)
    response = assert_error(excinfo, "NotFoundException", 404)
    assert NO_SUCH_ID in response["Error"]["Message"]
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.create_attendee(MeetingId=NO_SUCH_ID, ExternalUserId="someone")
    assert_error(excinfo, "NotFoundException", 404)
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.delete_meeting(MeetingId=NO_SUCH_ID)
    assert_error(excinfo, "NotFoundException", 404)


def test_bad_requests(client):
    with pytest.raises(client.exceptions.BadRequestException) as excinfo:
        client.create_meeting(MediaRegion="mars-1", ExternalMeetingId="nowhere")
    response = assert_error(excinfo, "BadRequestException", 400)
    assert "MediaRegion" in response["Error"]["Message"]

    meeting_id = new_meeting(client, ExternalMeetingId="bad-requests")["MeetingId"]
    with pytest.raises(client.exceptions.BadRequestException) as excinfo:
        client.create_attendee(MeetingId=meeting_id, ExternalUserId="u" * 65)
    assert_error(excinfo, "BadRequestException", 400)
    with pytest.raises(client.exceptions.BadRequestException) as excinfo:
        client.list_attendees(MeetingId=meeting_id, MaxResults=101)
    assert_error(excinfo, "BadRequestException", 400)
    with pytest.raises(client.exceptions.BadRequestException) as excinfo:
        client.get_meeting(MeetingId="not-a-guid")
    assert_error(excinfo, "BadRequestException", 400)


def test_conflict_on_reused_token(client):
    token = "conflict-" + uuid.uuid4().hex[:8]
    new_meeting(client, ClientRequestToken=token, ExternalMeetingId="first")
    with pytest.raises(client.exceptions.ConflictException) as excinfo:
        new_meeting(client, ClientRequestToken=token, ExternalMeetingId="second")
    assert_error(excinfo, "ConflictException", 409)


def test_tag_errors(client):
    unknown = f"arn:aws:chime:{REGION}:{ACCOUNT}:meeting/{NO_SUCH_ID}"
    with pytest.raises(client.exceptions.ResourceNotFoundException) as excinfo:
        client.list_tags_for_resource(ResourceARN=unknown)
    assert_error(excinfo, "ResourceNotFoundException", 404)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as excinfo:
        client.tag_resource(ResourceARN=unknown, Tags=[{"Key": "a", "Value": "b"}])
    assert_error(excinfo, "ResourceNotFoundException", 404)
    with pytest.raises(client.exceptions.ResourceNotFoundException) as excinfo:
        client.untag_resource(ResourceARN=unknown, TagKeys=["a"])
    assert_error(excinfo, "ResourceNotFoundException", 404)

    # 51 tags on one meeting: 50 given at creation, one more through TagResource.
    fifty = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    arn = new_meeting(client, ExternalMeetingId="many-tags", Tags=fifty)["MeetingArn"]
    assert len(client.list_tags_for_resource(ResourceARN=arn)["Tags"]) == 50
    with pytest.raises(client.exceptions.TooManyTagsException) as excinfo:
        client.tag_resource(ResourceARN=arn, Tags=[{"Key": "one-more", "Value": "v"}])
    response = assert_error(excinfo, "TooManyTagsException", 400)
    assert len(client.list_tags_for_resource(ResourceARN=arn)["Tags"]) == 50
    # Replacing an existing key adds no tag.
    client.tag_resource(ResourceARN=arn, Tags=[{"Key": "k0", "Value": "new"}])
    assert {"Key": "k0", "Value": "new"} in client.list_tags_for_resource(ResourceARN=arn)["Tags"]

    # A single request listing 51 tags breaks the model's TagList length (0-50) and is refused
    # before any tag count is looked at; either 400 code is a modeled exception boto3 maps.
    fresh = new_meeting(client, ExternalMeetingId="tags-51")["MeetingArn"]
    fifty_one = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    with pytest.raises((client.exceptions.TooManyTagsException, client.exceptions.BadRequestException)) as excinfo:
        client.tag_resource(ResourceARN=fresh, Tags=fifty_one)
    code = excinfo.value.response["Error"]["Code"]
    assert_error(excinfo, code, 400)
    assert client.list_tags_for_resource(ResourceARN=fresh)["Tags"] == []
    with pytest.raises((client.exceptions.TooManyTagsException, client.exceptions.BadRequestException)) as excinfo:
        new_meeting(client, ExternalMeetingId="create-51", Tags=fifty_one)
    assert_error(excinfo, excinfo.value.response["Error"]["Code"], 400)


def test_wrong_secret_is_forbidden(server, client_factory):
    intruder = client_factory(server, secret="not-the-secret")
    with pytest.raises(intruder.exceptions.ForbiddenException) as excinfo:
        intruder.get_meeting(MeetingId=NO_SUCH_ID)
    assert_error(excinfo, "ForbiddenException", 403)
    with pytest.raises(intruder.exceptions.ForbiddenException) as excinfo:
        intruder.create_meeting(MediaRegion="us-east-1", ExternalMeetingId="nope")
    assert_error(excinfo, "ForbiddenException", 403)


def test_any_signing_region_is_accepted(server, client_factory):
    client = client_factory(server, region="ap-southeast-1")
    meeting = new_meeting(client, MediaRegion="ap-southeast-1")
    assert meeting["MeetingArn"] == (
        f"arn:aws:chime:ap-southeast-1:{ACCOUNT}:meeting/{meeting['MeetingId']}"
    )


def test_active_meeting_quota(start_server, client_factory):
    small = start_server("--max-active-meetings", "2")
    client = client_factory(small)
    ids = [new_meeting(client, ExternalMeetingId=f"quota-{i}")["MeetingId"] for i in range(2)]
    with pytest.raises(client.exceptions.LimitExceededException) as excinfo:
        new_meeting(client, ExternalMeetingId="quota-2")
    assert_error(excinfo, "LimitExceededException", 400)
    # botocore's standard retry mode counts LimitExceededException as throttling, and
    # max_attempts=1 allows one retry: the retried attempt was refused the same way.
    assert excinfo.value.response["ResponseMetadata"]["RetryAttempts"] <= 1
    # Deleting a meeting frees its slot.
    client.delete_meeting(MeetingId=ids[0])
    new_meeting(client, ExternalMeetingId="quota-3")


# --- lifecycle ---------------------------------------------------------------------------------


def test_idle_meeting_ends_after_five_minutes(start_server, client_factory):
    clocked = start_server()
    client = client_factory(clocked)
    meeting = new_meeting(client, ExternalMeetingId="idle")
    attendee = client.create_attendee(MeetingId=meeting["MeetingId"], ExternalUserId="nobody-joins")
    clocked.advance_clock(299)
    client.get_meeting(MeetingId=meeting["MeetingId"])
    clocked.advance_clock(2)
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=meeting["MeetingId"])
    assert_error(excinfo, "NotFoundException", 404)
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_attendee(
            MeetingId=meeting["MeetingId"], AttendeeId=attendee["Attendee"]["AttendeeId"]
        )
    # An ended meeting no longer counts: a new one can be created right away.
    new_meeting(client, ExternalMeetingId="after-idle")


def test_meeting_ends_after_24_hours_in_any_case(start_server, client_factory):
    # An idle timeout longer than a day isolates the maximum-duration rule.
    clocked = start_server("--meeting-idle-timeout", "48h")
    client = client_factory(clocked)
    meeting_id = new_meeting(client, ExternalMeetingId="long")["MeetingId"]
    clocked.advance_clock(24 * 3600 - 5)
    client.get_meeting(MeetingId=meeting_id)
    clocked.advance_clock(10)
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=meeting_id)
    assert_error(excinfo, "NotFoundException", 404)


def test_meeting_ends_after_301_seconds(server, client):
    # Last test of the module: it moves the shared server's clock, ending every meeting above.
    meeting = new_meeting(client, ExternalMeetingId="clocked")
    server.advance_clock(301)
    with pytest.raises(client.exceptions.NotFoundException) as excinfo:
        client.get_meeting(MeetingId=meeting["MeetingId"])
    assert_error(excinfo, "NotFoundException", 404)
