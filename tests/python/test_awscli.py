"""The AWS CLI v1 (``aws chime-sdk-meetings …``) against carillon, unmodified."""

from __future__ import annotations

import base64
import json
import re

from conftest import ACCOUNT, NO_SUCH_ID, REGION


def test_cli_meeting_lifecycle(server, aws):
    features = {"Audio": {"EchoReduction": "AVAILABLE"}, "Attendee": {"MaxCount": 10}}
    created = aws(
        "create-meeting",
        "--client-request-token", "cli-token-1",
        "--media-region", "us-west-2",
        "--external-meeting-id", "cli-meeting",
        "--meeting-features", json.dumps(features),
        "--tags", json.dumps([{"Key": "team", "Value": "blue"}]),
    )
    meeting = created["Meeting"]
    meeting_id = meeting["MeetingId"]
    assert meeting["ExternalMeetingId"] == "cli-meeting"
    assert meeting["MediaRegion"] == "us-west-2"
    assert meeting["MeetingFeatures"] == features
    assert meeting["MeetingArn"] == f"arn:aws:chime:{REGION}:{ACCOUNT}:meeting/{meeting_id}"

    # The same token and parameters return the same meeting.
    again = aws(
        "create-meeting",
        "--client-request-token", "cli-token-1",
        "--media-region", "us-west-2",
        "--external-meeting-id", "cli-meeting",
        "--meeting-features", json.dumps(features),
        "--tags", json.dumps([{"Key": "team", "Value": "blue"}]),
    )
    assert again["Meeting"]["MeetingId"] == meeting_id

    got = aws("get-meeting", "--meeting-id", meeting_id)["Meeting"]
    assert got == meeting
    placement = got["MediaPlacement"]
    assert placement["SignalingUrl"] == f"ws://127.0.0.1:{server.port}/control/{meeting_id}"
    assert placement["AudioHostUrl"] == server.media
    assert placement["EventIngestionUrl"] == f"{server.url}/v1/client-events"

    attendee = aws(
        "create-attendee", "--meeting-id", meeting_id, "--external-user-id", "cli-alice"
    )["Attendee"]
    assert attendee["ExternalUserId"] == "cli-alice"
    assert attendee["Capabilities"] == {
        "Audio": "SendReceive",
        "Video": "SendReceive",
        "Content": "SendReceive",
    }
    token = attendee["JoinToken"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert decoded.startswith(attendee["AttendeeId"] + ":")

    batch = aws(
        "batch-create-attendee",
        "--meeting-id", meeting_id,
        "--attendees", json.dumps([{"ExternalUserId": f"cli-user-{i}"} for i in range(4)]),
    )
    assert len(batch["Attendees"]) == 4
    assert batch.get("Errors", []) == []
    expected = [attendee["AttendeeId"]] + [a["AttendeeId"] for a in batch["Attendees"]]

    # list-attendees has no CLI auto-pagination: walk NextToken by hand, two per page.
    seen, token_args, pages = [], [], 0
    while True:
        page = aws("list-attendees", "--meeting-id", meeting_id, "--max-results", "2", *token_args)
        pages += 1
        seen += [a["AttendeeId"] for a in page["Attendees"]]
        if "NextToken" not in page:
            break
        token_args = ["--next-token", page["NextToken"]]
        assert pages < 10
    assert pages == 3
    assert seen == expected

    arn = meeting["MeetingArn"]
    assert aws(
        "tag-resource",
        "--resource-arn", arn,
        "--tags", "Key=env,Value=ci", "Key=team,Value=green",
    ) == {}
    assert aws("untag-resource", "--resource-arn", arn, "--tag-keys", "env") == {}
    tags = aws("list-tags-for-resource", "--resource-arn", arn)["Tags"]
    assert tags == [{"Key": "team", "Value": "green"}]

    assert aws("delete-meeting", "--meeting-id", meeting_id) == {}
    failed = aws("get-meeting", "--meeting-id", meeting_id, expect_error=True)
    assert "NotFoundException" in failed.stderr
    assert "GetMeeting" in failed.stderr


def test_cli_create_meeting_with_attendees_and_transcription(aws):
    out = aws(
        "create-meeting-with-attendees",
        "--media-region", "eu-central-1",
        "--external-meeting-id", "cli-cmwa",
        "--attendees", json.dumps([{"ExternalUserId": "a1"}, {"ExternalUserId": "a2"}]),
    )
    meeting_id = out["Meeting"]["MeetingId"]
    assert [a["ExternalUserId"] for a in out["Attendees"]] == ["a1", "a2"]
    assert aws(
        "start-meeting-transcription",
        "--meeting-id", meeting_id,
        "--transcription-configuration",
        json.dumps({"EngineTranscribeSettings": {"LanguageCode": "en-US"}}),
    ) == {}
    assert aws("stop-meeting-transcription", "--meeting-id", meeting_id) == {}
    first = out["Attendees"][0]["AttendeeId"]
    assert aws("delete-attendee", "--meeting-id", meeting_id, "--attendee-id", first) == {}
    listed = aws("list-attendees", "--meeting-id", meeting_id)["Attendees"]
    assert [a["ExternalUserId"] for a in listed] == ["a2"]


def test_cli_errors(aws):
    not_found = aws("get-meeting", "--meeting-id", NO_SUCH_ID, expect_error=True)
    assert "An error occurred (NotFoundException)" in not_found.stderr
    assert NO_SUCH_ID in not_found.stderr

    bad = aws(
        "create-meeting",
        "--media-region", "mars-1",
        "--external-meeting-id", "cli-bad",
        expect_error=True,
    )
    assert "(BadRequestException)" in bad.stderr
    assert "MediaRegion" in bad.stderr

    unknown_arn = f"arn:aws:chime:{REGION}:{ACCOUNT}:meeting/{NO_SUCH_ID}"
    missing = aws("list-tags-for-resource", "--resource-arn", unknown_arn, expect_error=True)
    assert "(ResourceNotFoundException)" in missing.stderr

    forbidden = aws(
        "get-meeting",
        "--meeting-id", NO_SUCH_ID,
        expect_error=True,
        env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"},
    )
    assert "(ForbiddenException)" in forbidden.stderr
