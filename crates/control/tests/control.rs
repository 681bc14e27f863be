//! Simulated-clock tests of the control-plane state machine.

use carillon_control::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const MIN: u64 = 60_000;

fn plane() -> ControlPlane {
    plane_with(Limits::default())
}

fn plane_with(limits: Limits) -> ControlPlane {
    ControlPlane::new(
        limits,
        "123456789012".into(),
        Box::new(StdRng::seed_from_u64(7)),
    )
}

fn caller() -> Caller {
    Caller {
        region: "us-east-1".into(),
    }
}

fn spec(external: &str) -> MeetingSpec {
    MeetingSpec {
        external_meeting_id: external.into(),
        meeting_host_id: None,
        media_region: "us-east-1".into(),
        notifications: None,
        features: None,
        primary_meeting_id: None,
        tenant_ids: vec![],
        tags: vec![],
        network_type: None,
    }
}

fn create(p: &mut ControlPlane, external: &str, now: u64) -> Meeting {
    p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: spec(external),
        },
        &caller(),
        now,
    )
    .unwrap()
}

fn replica_of(p: &mut ControlPlane, primary: MeetingId, now: u64) -> Result<Meeting, ControlError> {
    let mut s = spec("replica");
    s.primary_meeting_id = Some(primary);
    p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: s,
        },
        &caller(),
        now,
    )
}

fn attendee(
    p: &mut ControlPlane,
    m: MeetingId,
    user: &str,
    now: u64,
) -> Result<Attendee, ControlError> {
    p.create_attendee(
        m,
        AttendeeRequest {
            external_user_id: user.into(),
            capabilities: None,
        },
        now,
    )
}

#[test]
fn meeting_arn_and_defaults() {
    let mut p = plane();
    let m = create(&mut p, "standup", 0);
    assert_eq!(
        m.arn(),
        format!("arn:aws:chime:us-east-1:123456789012:meeting/{}", m.id)
    );
    assert_eq!(p.get_meeting(m.id, 1).unwrap(), m);
    assert!(matches!(
        p.take_changes().as_slice(),
        [Change::PutMeeting(_)]
    ));
}

#[test]
fn client_request_token_idempotency() {
    let mut p = plane();
    let request = CreateMeeting {
        client_request_token: Some("token-1".into()),
        spec: spec("a"),
    };
    let first = p.create_meeting(request.clone(), &caller(), 0).unwrap();
    let again = p.create_meeting(request.clone(), &caller(), 10).unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(p.meeting_count(), 1);
    let mut different = request.clone();
    different.spec.external_meeting_id = "b".into();
    assert!(matches!(
        p.create_meeting(different, &caller(), 20),
        Err(ControlError::IdempotencyMismatch { .. })
    ));
    // Once the meeting has ended, the token may create a new meeting.
    p.delete_meeting(first.id, 30).unwrap();
    let third = p.create_meeting(request, &caller(), 40).unwrap();
    assert_ne!(third.id, first.id);
}

#[test]
fn external_user_id_is_idempotent_and_case_insensitive() {
    let mut p = plane();
    let m = create(&mut p, "m", 0);
    let a = attendee(&mut p, m.id, "Alice", 0).unwrap();
    let b = attendee(&mut p, m.id, "alice", 1).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.capabilities, Capabilities::ALL);
    let c = attendee(&mut p, m.id, "bob", 1).unwrap();
    assert_ne!(a.id, c.id);
    assert_eq!(attendee_id_of_token(&a.join_token), Some(a.id));
    assert!(
        !a.join_token.contains('=') && !a.join_token.contains('/') && !a.join_token.contains('+')
    );
    assert_eq!(p.authenticate(m.id, &a.join_token, 2).unwrap().id, a.id);
    assert!(
        p.authenticate(m.id, &c.join_token[..c.join_token.len() - 1], 2)
            .is_none()
    );
}

#[test]
fn attendee_quota_and_max_count() {
    let mut p = plane_with(Limits {
        max_attendees: 3,
        ..Limits::default()
    });
    let m = create(&mut p, "m", 0);
    for i in 0..3 {
        attendee(&mut p, m.id, &format!("user-{i}"), 0).unwrap();
    }
    assert!(matches!(
        attendee(&mut p, m.id, "user-4", 0),
        Err(ControlError::MeetingFull { limit: 3, .. })
    ));
    // An existing ExternalUserId still answers when the meeting is full.
    attendee(&mut p, m.id, "USER-1", 0).unwrap();

    let mut s = spec("small");
    s.features = Some(MeetingFeatures {
        attendee: Some(AttendeeFeatures { max_count: Some(2) }),
        ..Default::default()
    });
    let small = p
        .create_meeting(
            CreateMeeting {
                client_request_token: None,
                spec: s,
            },
            &caller(),
            0,
        )
        .unwrap();
    let outcome = p
        .batch_create_attendee(
            small.id,
            ["a", "b", "c"]
                .iter()
                .map(|u| {
                    Ok(AttendeeRequest {
                        external_user_id: u.to_string(),
                        capabilities: None,
                    })
                })
                .collect(),
            0,
        )
        .unwrap();
    assert_eq!(outcome.attendees.len(), 2);
    assert_eq!(outcome.errors.len(), 1);
    assert_eq!(outcome.errors[0].0.as_deref(), Some("c"));
}

#[test]
fn high_resolution_caps_attendees() {
    let mut p = plane();
    let mut s = spec("hd");
    s.features = Some(MeetingFeatures {
        video: Some(VideoFeatures {
            max_resolution: Some(VideoResolution::Fhd),
        }),
        ..Default::default()
    });
    let req = |s: MeetingSpec| CreateMeeting {
        client_request_token: None,
        spec: s,
    };
    assert!(matches!(
        p.create_meeting(req(s.clone()), &caller(), 0),
        Err(ControlError::Invalid(_))
    ));
    s.features.as_mut().unwrap().attendee = Some(AttendeeFeatures {
        max_count: Some(26),
    });
    assert!(matches!(
        p.create_meeting(req(s.clone()), &caller(), 0),
        Err(ControlError::Invalid(_))
    ));
    s.features.as_mut().unwrap().attendee = Some(AttendeeFeatures {
        max_count: Some(25),
    });
    p.create_meeting(req(s), &caller(), 0).unwrap();
}

#[test]
fn capability_rules() {
    use MediaCapability::*;
    let all = MeetingFeatures::default();
    let caps = |audio, video, content| Capabilities {
        audio,
        video,
        content,
    };
    assert!(check_capabilities(&all, &caps(SendReceive, Receive, SendReceive)).is_ok());
    assert!(check_capabilities(&all, &caps(SendReceive, Send, SendReceive)).is_err());
    assert!(check_capabilities(&all, &caps(SendReceive, Send, Receive)).is_err());
    assert!(check_capabilities(&all, &caps(SendReceive, Send, Send)).is_ok());
    assert!(check_capabilities(&all, &caps(SendReceive, Receive, None)).is_ok());
    let no_video = MeetingFeatures {
        video: Some(VideoFeatures {
            max_resolution: Some(VideoResolution::None),
        }),
        ..Default::default()
    };
    assert!(check_capabilities(&no_video, &caps(SendReceive, Receive, None)).is_err());
    assert!(check_capabilities(&no_video, &caps(SendReceive, None, Send)).is_ok());
    // The documented default for video None with content allowed.
    assert_eq!(
        no_video.default_capabilities(),
        caps(SendReceive, Receive, SendReceive)
    );
    let nothing = MeetingFeatures {
        video: Some(VideoFeatures {
            max_resolution: Some(VideoResolution::None),
        }),
        content: Some(ContentFeatures {
            max_resolution: Some(ContentResolution::None),
        }),
        ..Default::default()
    };
    assert_eq!(
        nothing.default_capabilities(),
        caps(SendReceive, None, None)
    );
    let no_content = MeetingFeatures {
        content: Some(ContentFeatures {
            max_resolution: Some(ContentResolution::None),
        }),
        ..Default::default()
    };
    assert!(check_capabilities(&no_content, &caps(SendReceive, SendReceive, Receive)).is_err());
}

#[test]
fn replica_rules() {
    let mut p = plane();
    let primary = create(&mut p, "primary", 0);
    let replicas: Vec<Meeting> = (0..4)
        .map(|_| replica_of(&mut p, primary.id, 0).unwrap())
        .collect();
    assert_eq!(replicas[0].spec.primary_meeting_id, Some(primary.id));
    assert!(matches!(
        replica_of(&mut p, primary.id, 0),
        Err(ControlError::TooManyReplicas { limit: 4, .. })
    ));
    assert!(matches!(
        replica_of(&mut p, replicas[0].id, 0),
        Err(ControlError::PrimaryIsReplica(_))
    ));
    let unknown: MeetingId = "00000000-0000-4000-8000-000000000000".parse().unwrap();
    assert!(matches!(
        replica_of(&mut p, unknown, 0),
        Err(ControlError::PrimaryNotFound(_))
    ));
    let r_att = attendee(&mut p, replicas[1].id, "viewer", 0).unwrap();

    // Deleting a replica ends only that replica.
    p.delete_meeting(replicas[0].id, 1).unwrap();
    assert!(p.get_meeting(primary.id, 1).is_ok());
    replica_of(&mut p, primary.id, 1).unwrap();

    // Deleting the primary ends every replica and their attendees.
    p.take_notices();
    p.delete_meeting(primary.id, 2).unwrap();
    for r in &replicas[1..] {
        assert!(matches!(
            p.get_meeting(r.id, 2),
            Err(ControlError::MeetingNotFound(_))
        ));
    }
    assert!(p.authenticate_any(&r_att.join_token, 2).is_none());
    let ended = p
        .take_notices()
        .into_iter()
        .filter(|n| matches!(n, Notice::MeetingEnded { .. }))
        .count();
    assert_eq!(ended, 5);
    assert_eq!(p.meeting_count(), 0);
}

#[test]
fn idle_and_max_duration_timers() {
    let mut p = plane();
    let m = create(&mut p, "idle", 0);
    let replica = replica_of(&mut p, m.id, 0).unwrap();
    let a = attendee(&mut p, m.id, "a", 0).unwrap();
    assert_eq!(p.next_deadline(), Some(5 * MIN));
    p.sweep(5 * MIN - 1);
    assert!(p.get_meeting(m.id, 5 * MIN - 1).is_ok());
    // A connection stops the idle timer; leaving restarts it.
    p.attendee_connected(m.id, a.id, 4 * MIN);
    p.sweep(20 * MIN);
    assert!(p.get_meeting(m.id, 20 * MIN).is_ok());
    p.attendee_disconnected(m.id, a.id, 20 * MIN);
    assert!(p.get_meeting(m.id, 25 * MIN - 1).is_ok());
    // Lazy expiry: the read itself notices the deadline.
    assert!(matches!(
        p.get_meeting(replica.id, 25 * MIN),
        Err(ControlError::MeetingNotFound(_))
    ));
    assert!(matches!(
        p.get_meeting(m.id, 25 * MIN),
        Err(ControlError::MeetingNotFound(_))
    ));

    let long = create(&mut p, "long", 0);
    let b = attendee(&mut p, long.id, "b", 0).unwrap();
    p.attendee_connected(long.id, b.id, 0);
    p.sweep(24 * 60 * MIN - 1);
    assert!(p.get_meeting(long.id, 24 * 60 * MIN - 1).is_ok());
    p.sweep(24 * 60 * MIN);
    assert!(p.take_notices().contains(&Notice::MeetingEnded {
        meeting: long.id,
        reason: EndReason::MaxDuration
    }));
}

#[test]
fn active_meeting_quota_counts_ended_meetings_out() {
    let mut p = plane_with(Limits {
        max_active_meetings: 2,
        ..Limits::default()
    });
    create(&mut p, "a", 0);
    create(&mut p, "b", 0);
    let third = p.create_meeting(
        CreateMeeting {
            client_request_token: None,
            spec: spec("c"),
        },
        &caller(),
        MIN,
    );
    assert!(matches!(
        third,
        Err(ControlError::TooManyMeetings { limit: 2 })
    ));
    // After the idle timeout the two meetings are gone and there is room again.
    create(&mut p, "c", 5 * MIN);
}

#[test]
fn list_attendees_pages_in_creation_order() {
    let mut p = plane();
    let m = create(&mut p, "m", 0);
    let created: Vec<Attendee> = (0..250)
        .map(|i| attendee(&mut p, m.id, &format!("user-{i:03}"), 0).unwrap())
        .collect();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = p.list_attendees(m.id, after, 100, 0).unwrap();
        seen.extend(page.attendees);
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, created);
    // Exactly one page: no continuation.
    let page = p.list_attendees(m.id, None, 250, 0).unwrap();
    assert_eq!(page.next_after, None);
    // Deleting the attendee a token points at does not break the continuation.
    let first = p.list_attendees(m.id, None, 10, 0).unwrap();
    p.delete_attendee(m.id, first.attendees[9].id, 0).unwrap();
    let next = p.list_attendees(m.id, first.next_after, 10, 0).unwrap();
    assert_eq!(next.attendees[0].id, created[10].id);
}

#[test]
fn tags_on_meeting_arn() {
    let mut p = plane();
    let m = create(&mut p, "m", 0);
    let arn = m.arn();
    let tag = |k: &str, v: &str| Tag {
        key: k.into(),
        value: v.into(),
    };
    p.tag_resource(&arn, vec![tag("team", "a"), tag("env", "dev")], 0)
        .unwrap();
    p.tag_resource(&arn, vec![tag("team", "b")], 0).unwrap();
    assert_eq!(
        p.list_tags(&arn, 0).unwrap(),
        vec![tag("team", "b"), tag("env", "dev")]
    );
    p.untag_resource(&arn, &["team".into(), "absent".into()], 0)
        .unwrap();
    assert_eq!(p.list_tags(&arn, 0).unwrap(), vec![tag("env", "dev")]);
    let many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert!(matches!(
        p.tag_resource(&arn, many, 0),
        Err(ControlError::TooManyTags {
            count: 51,
            limit: 50
        })
    ));
    let other_region = arn.replace("us-east-1", "us-west-2");
    assert!(matches!(
        p.list_tags(&other_region, 0),
        Err(ControlError::ResourceNotFound(_))
    ));
    assert!(matches!(
        p.list_tags("arn:aws:chime:nope", 0),
        Err(ControlError::ResourceNotFound(_))
    ));
}

#[test]
fn restore_rebuilds_state_and_restarts_idle_timers() {
    let mut p = plane();
    let m = create(&mut p, "m", 0);
    let r = replica_of(&mut p, m.id, 0).unwrap();
    let a = attendee(&mut p, m.id, "a", 0).unwrap();
    p.attendee_connected(m.id, a.id, MIN);
    let snapshot = Snapshot {
        meetings: vec![p.get_meeting(m.id, MIN).unwrap(), r.clone()],
        attendees: vec![a.clone()],
    };
    let mut q = ControlPlane::restore(
        Limits::default(),
        "123456789012".into(),
        Box::new(StdRng::seed_from_u64(8)),
        snapshot,
        10 * MIN,
    );
    // The connected meeting's idle timer restarts at the restore time.
    assert!(
        matches!(q.take_changes().as_slice(), [Change::PutMeeting(x)] if x.idle_since == Some(10 * MIN))
    );
    assert_eq!(q.get_attendee(m.id, a.id, 11 * MIN).unwrap(), a);
    assert_eq!(
        q.authenticate(m.id, &a.join_token, 11 * MIN).unwrap().id,
        a.id
    );
    // Sequence numbers continue after the restored ones.
    let b = attendee(&mut q, m.id, "b", 11 * MIN).unwrap();
    assert!(b.seq > a.seq);
    // The replica link survives: deleting the primary ends the replica.
    q.delete_meeting(m.id, 12 * MIN).unwrap();
    assert!(q.get_meeting(r.id, 12 * MIN).is_err());
}

#[test]
fn max_count_cannot_exceed_the_configured_attendee_limit() {
    let mut p = plane_with(Limits {
        max_attendees: 10,
        ..Limits::default()
    });
    let with_max = |n: u32| {
        let mut s = spec("capped");
        s.features = Some(MeetingFeatures {
            attendee: Some(AttendeeFeatures { max_count: Some(n) }),
            ..Default::default()
        });
        CreateMeeting {
            client_request_token: None,
            spec: s,
        }
    };
    assert!(matches!(
        p.create_meeting(with_max(11), &caller(), 0),
        Err(ControlError::Invalid(m)) if m.contains("at most 10")
    ));
    p.create_meeting(with_max(10), &caller(), 0).unwrap();

    // A meeting stored with a larger MaxCount obeys a limit lowered since.
    let mut q = plane();
    let big = q.create_meeting(with_max(50), &caller(), 0).unwrap();
    let mut r = ControlPlane::restore(
        Limits {
            max_attendees: 2,
            ..Limits::default()
        },
        "123456789012".into(),
        Box::new(StdRng::seed_from_u64(9)),
        Snapshot {
            meetings: vec![big.clone()],
            attendees: vec![],
        },
        0,
    );
    attendee(&mut r, big.id, "a", 0).unwrap();
    attendee(&mut r, big.id, "b", 0).unwrap();
    assert!(matches!(
        attendee(&mut r, big.id, "c", 0),
        Err(ControlError::MeetingFull { limit: 2, .. })
    ));
}

#[test]
fn create_meeting_with_attendees_idempotency_covers_the_attendees() {
    let mut p = plane();
    let request = |token: &str| CreateMeeting {
        client_request_token: Some(token.into()),
        spec: spec("m"),
    };
    let items = |users: &[&str]| -> Vec<AttendeeItem> {
        users
            .iter()
            .map(|u| {
                if u.len() < 2 {
                    Err((
                        Some(u.to_string()),
                        ControlError::Invalid("too short".into()),
                    ))
                } else {
                    Ok(AttendeeRequest {
                        external_user_id: u.to_string(),
                        capabilities: None,
                    })
                }
            })
            .collect()
    };
    let (m, first) = p
        .create_meeting_with_attendees(request("t1"), items(&["ann", "bob", "x"]), &caller(), 0)
        .unwrap();
    assert_eq!((first.attendees.len(), first.errors.len()), (2, 1));
    let (again, second) = p
        .create_meeting_with_attendees(request("t1"), items(&["ann", "bob", "x"]), &caller(), 1)
        .unwrap();
    assert_eq!(again.id, m.id);
    assert_eq!(second.attendees, first.attendees);
    assert_eq!(second.errors, first.errors);
    assert_eq!(
        p.list_attendees(m.id, None, 100, 2)
            .unwrap()
            .attendees
            .len(),
        2
    );
    for other in [
        &["ann", "bob"][..],
        &["ann", "bob", "x", "cy"][..],
        &["bob", "ann", "x"][..],
    ] {
        assert!(matches!(
            p.create_meeting_with_attendees(request("t1"), items(other), &caller(), 3),
            Err(ControlError::IdempotencyMismatch { .. })
        ));
    }
    let mut caps = items(&["ann", "bob", "x"]);
    if let Ok(first) = &mut caps[0] {
        first.capabilities = Some(Capabilities::ALL);
    }
    assert!(matches!(
        p.create_meeting_with_attendees(request("t1"), caps, &caller(), 3),
        Err(ControlError::IdempotencyMismatch { .. })
    ));
    assert_eq!(
        p.list_attendees(m.id, None, 100, 4)
            .unwrap()
            .attendees
            .len(),
        2
    );
    // The operations do not share tokens.
    assert!(matches!(
        p.create_meeting(request("t1"), &caller(), 5),
        Err(ControlError::IdempotencyMismatch { .. })
    ));
    p.create_meeting(request("t2"), &caller(), 5).unwrap();
    assert!(matches!(
        p.create_meeting_with_attendees(request("t2"), items(&["ann"]), &caller(), 6),
        Err(ControlError::IdempotencyMismatch { .. })
    ));
    // The remembered attendees survive a restart.
    let mut meeting = p.get_meeting(m.id, 7).unwrap();
    let json = serde_json::to_string(&meeting).unwrap();
    meeting = serde_json::from_str(&json).unwrap();
    let mut q = ControlPlane::restore(
        Limits::default(),
        "123456789012".into(),
        Box::new(StdRng::seed_from_u64(8)),
        Snapshot {
            meetings: vec![meeting],
            attendees: first.attendees.clone(),
        },
        7,
    );
    let (again, third) = q
        .create_meeting_with_attendees(request("t1"), items(&["ann", "bob", "x"]), &caller(), 8)
        .unwrap();
    assert_eq!(again.id, m.id);
    assert_eq!(third.attendees, first.attendees);
    assert!(matches!(
        q.create_meeting_with_attendees(request("t1"), items(&["ann"]), &caller(), 8),
        Err(ControlError::IdempotencyMismatch { .. })
    ));
}

#[test]
fn reload_makes_memory_equal_the_store_and_keeps_connections() {
    let mut p = plane();
    let kept = create(&mut p, "kept", 0);
    let a = attendee(&mut p, kept.id, "ann", 0).unwrap();
    let stored = p.get_meeting(kept.id, 0).unwrap();
    // What the store holds from here on: the meeting not yet connected, and ann.
    let snapshot = Snapshot {
        meetings: vec![stored],
        attendees: vec![a.clone()],
    };
    // Memory then runs ahead: ann connects (that record is lost), another meeting and
    // attendee are created (their commits fail).
    p.attendee_connected(kept.id, a.id, MIN);
    let lost = create(&mut p, "lost", MIN);
    let bob = attendee(&mut p, kept.id, "bob", MIN).unwrap();
    p.take_changes();

    p.reload(snapshot, 2 * MIN);
    assert!(p.get_meeting(lost.id, 2 * MIN).is_err());
    assert!(p.get_attendee(kept.id, bob.id, 2 * MIN).is_err());
    assert_eq!(p.get_attendee(kept.id, a.id, 2 * MIN).unwrap(), a);
    assert_eq!(p.meeting_count(), 1);
    // ann is still connected: the stored idle timer is corrected, and the meeting does not
    // end for idleness.
    assert!(matches!(
        p.take_changes().as_slice(),
        [Change::PutMeeting(m)] if m.id == kept.id && m.idle_since.is_none()
    ));
    p.sweep(60 * MIN);
    assert!(p.get_meeting(kept.id, 60 * MIN).is_ok());
    // ...until ann leaves.
    p.attendee_disconnected(kept.id, a.id, 60 * MIN);
    p.sweep(66 * MIN);
    assert!(p.get_meeting(kept.id, 66 * MIN).is_err());
    assert_eq!(p.meeting_count(), 0);
}

// ----- events -----

const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:meeting-events";

fn notified_spec(external: &str) -> MeetingSpec {
    let mut s = spec(external);
    s.notifications = Some(Notifications {
        sqs_queue_arn: Some(QUEUE.into()),
        ..Default::default()
    });
    s
}

fn create_notified(p: &mut ControlPlane, external: &str, now: u64) -> Meeting {
    p.create_meeting(
        CreateMeeting {
            client_request_token: Some(format!("tok-{external}")),
            spec: notified_spec(external),
        },
        &caller(),
        now,
    )
    .unwrap()
}

/// The events among the queued changes, leaving the rest.
fn events(p: &mut ControlPlane) -> Vec<Event> {
    p.take_changes()
        .into_iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(*e),
            _ => None,
        })
        .collect()
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

fn external_user_id(event: &Event) -> String {
    event.attendee.as_ref().unwrap().external_user_id.clone()
}

#[test]
fn no_target_no_event() {
    let mut p = plane();
    let m = create(&mut p, "quiet", 0);
    attendee(&mut p, m.id, "alice", 1).unwrap();
    p.delete_meeting(m.id, 2).unwrap();
    assert!(events(&mut p).is_empty());
}

#[test]
fn meeting_lifecycle_events_carry_the_envelope_fields() {
    let mut p = plane();
    let m = create_notified(&mut p, "standup", 1_000);
    // The change and its event are queued by the same call, change first.
    let changes = p.take_changes();
    assert!(matches!(
        changes.as_slice(),
        [Change::PutMeeting(_), Change::Event(_)]
    ));
    let Change::Event(started) = &changes[1] else {
        unreachable!()
    };
    assert_eq!(started.kind, EventKind::MeetingStarted);
    assert_eq!(started.meeting.meeting_id, m.id);
    assert_eq!(started.meeting.external_meeting_id, "standup");
    assert_eq!(started.meeting.account, "123456789012");
    assert_eq!(started.meeting.control_region, "us-east-1");
    assert_eq!(started.meeting.media_region, "us-east-1");
    assert_eq!(started.time, 1_000);
    assert_eq!(started.attendee, None);
    assert_eq!(
        started.meeting.targets,
        vec![EventTarget::Sqs(QUEUE.into())]
    );
    assert!(is_guid(&started.id.to_string()));
    // An idempotent repeat of CreateMeeting reports nothing.
    p.create_meeting(
        CreateMeeting {
            client_request_token: Some("tok-standup".into()),
            spec: notified_spec("standup"),
        },
        &caller(),
        1_001,
    )
    .unwrap();
    assert!(events(&mut p).is_empty());
    p.delete_meeting(m.id, 2_000).unwrap();
    let ended = events(&mut p);
    assert_eq!(kinds(&ended), [EventKind::MeetingEnded]);
    assert_eq!(ended[0].time, 2_000);
    assert_ne!(ended[0].id, started.id);
}

#[test]
fn attendee_events_only_for_new_attendees() {
    let mut p = plane();
    let m = create_notified(&mut p, "m", 0);
    events(&mut p);
    let alice = attendee(&mut p, m.id, "alice", 1).unwrap();
    let added = events(&mut p);
    assert_eq!(kinds(&added), [EventKind::AttendeeAdded]);
    assert_eq!(added[0].attendee.as_ref().unwrap().id, alice.id);
    assert_eq!(
        added[0].attendee.as_ref().unwrap().attendee_id(),
        alice.id.to_string()
    );
    assert_eq!(external_user_id(&added[0]), "alice");
    // Same ExternalUserId (any case): the existing attendee, no event.
    attendee(&mut p, m.id, "ALICE", 2).unwrap();
    assert!(events(&mut p).is_empty());
    // Batch: one event per newly created attendee, none for repeats or failures.
    let outcome = p
        .batch_create_attendee(
            m.id,
            vec![
                Ok(AttendeeRequest {
                    external_user_id: "bob".into(),
                    capabilities: None,
                }),
                Ok(AttendeeRequest {
                    external_user_id: "alice".into(),
                    capabilities: None,
                }),
                Err((Some("bad".into()), ControlError::Invalid("no".into()))),
                Ok(AttendeeRequest {
                    external_user_id: "carol".into(),
                    capabilities: None,
                }),
            ],
            3,
        )
        .unwrap();
    assert_eq!(outcome.attendees.len(), 3);
    let batch = events(&mut p);
    assert_eq!(
        batch.iter().map(external_user_id).collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    p.delete_attendee(m.id, alice.id, 4).unwrap();
    let deleted = events(&mut p);
    assert_eq!(kinds(&deleted), [EventKind::AttendeeDeleted]);
    assert_eq!(external_user_id(&deleted[0]), "alice");
    // Capability updates and tags are not events.
    p.tag_resource(
        &m.arn(),
        vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }],
        5,
    )
    .unwrap();
    assert!(events(&mut p).is_empty());
}

#[test]
fn media_plane_and_authorization_events() {
    let mut p = plane();
    let m = create_notified(&mut p, "m", 0);
    let alice = attendee(&mut p, m.id, "alice", 0).unwrap();
    events(&mut p);
    p.attendee_authorized(m.id, &alice, false, 1);
    p.attendee_authorized(m.id, &alice, true, 1);
    p.attendee_connected(m.id, alice.id, 2);
    p.record_media_event(m.id, EventKind::AttendeeJoined, alice.id, "alice", 2);
    p.record_media_event(
        m.id,
        EventKind::AttendeeContentJoined,
        alice.id,
        "alice#content",
        3,
    );
    let got = events(&mut p);
    assert_eq!(
        kinds(&got),
        [
            EventKind::AttendeeAuthorized,
            EventKind::AttendeeAuthorized,
            EventKind::AttendeeJoined,
            EventKind::AttendeeContentJoined
        ]
    );
    let id = alice.id.to_string();
    let content = format!("{id}#content");
    let attendee_id = |e: &Event| e.attendee.as_ref().unwrap().attendee_id();
    assert_eq!(attendee_id(&got[0]), id);
    assert_eq!(attendee_id(&got[1]), content);
    assert_eq!(external_user_id(&got[1]), "alice#content");
    assert_eq!(attendee_id(&got[2]), id);
    assert_eq!(attendee_id(&got[3]), content);
    // The meeting ends while alice and her content share are connected: both leave first, in
    // the same call, and the media plane's own reports of those departures (which come
    // later) are not events a second time.
    p.delete_meeting(m.id, 4).unwrap();
    p.record_media_event(m.id, EventKind::AttendeeLeft, alice.id, "alice", 5);
    p.record_media_event(
        m.id,
        EventKind::AttendeeContentLeft,
        alice.id,
        "alice#content",
        5,
    );
    let ended = events(&mut p);
    assert_eq!(
        kinds(&ended),
        [
            EventKind::AttendeeLeft,
            EventKind::AttendeeContentLeft,
            EventKind::MeetingEnded
        ]
    );
    // Same call; the end a millisecond later, so that sorting by timestamp keeps the order.
    assert_eq!(ended.iter().map(|e| e.time).collect::<Vec<_>>(), [4, 4, 5]);
    assert_eq!(attendee_id(&ended[0]), id);
    assert_eq!(external_user_id(&ended[0]), "alice");
    assert_eq!(attendee_id(&ended[1]), content);
    assert_eq!(external_user_id(&ended[1]), "alice#content");
    // An unknown meeting: nothing.
    p.record_media_event(
        "00000000-0000-4000-8000-000000000000".parse().unwrap(),
        EventKind::AttendeeLeft,
        alice.id,
        "alice",
        6,
    );
    assert!(events(&mut p).is_empty());
}

#[test]
fn transcription_events() {
    let mut p = plane();
    let m = create_notified(&mut p, "m", 0);
    events(&mut p);
    let t = Transcription {
        engine: TranscriptionEngine::Transcribe,
        region: "us-east-2".into(),
        configuration_json: r#"{"EngineTranscribeSettings":{"LanguageCode":"en-US"}}"#.into(),
        started_at: 1,
    };
    p.start_transcription(m.id, t.clone(), 1).unwrap();
    // A second start is a configuration update, reported again.
    p.start_transcription(m.id, t.clone(), 2).unwrap();
    p.stop_transcription(m.id, 3).unwrap();
    // Stopping when nothing runs reports nothing.
    p.stop_transcription(m.id, 4).unwrap();
    let got = events(&mut p);
    assert_eq!(
        kinds(&got),
        [
            EventKind::TranscriptionStarted,
            EventKind::TranscriptionStarted,
            EventKind::TranscriptionStopped
        ]
    );
    for e in &got {
        let tr = e.transcription.as_ref().unwrap();
        assert_eq!(tr.region, "us-east-2");
        assert_eq!(tr.configuration_json, t.configuration_json);
    }
}

#[test]
fn ends_by_timer_and_replicas_report_their_own_events() {
    let mut p = plane();
    p.set_event_targets(vec![EventTarget::Webhook("http://127.0.0.1:9/h".into())]);
    let primary = create(&mut p, "primary", 0);
    let replica = replica_of(&mut p, primary.id, 0).unwrap();
    let started = events(&mut p);
    assert_eq!(
        started
            .iter()
            .map(|e| (e.kind, e.meeting.meeting_id))
            .collect::<Vec<_>>(),
        [
            (EventKind::MeetingStarted, primary.id),
            (EventKind::MeetingStarted, replica.id)
        ]
    );
    // Global targets apply to every meeting, with or without NotificationsConfiguration.
    assert_eq!(
        started[0].meeting.targets,
        vec![EventTarget::Webhook("http://127.0.0.1:9/h".into())]
    );
    // Idle for five minutes: the primary ends, and its replica with it.
    p.sweep(5 * MIN);
    let ended = events(&mut p);
    assert_eq!(ended.len(), 2);
    assert!(ended.iter().all(|e| e.kind == EventKind::MeetingEnded));
    let ids: Vec<MeetingId> = ended.iter().map(|e| e.meeting.meeting_id).collect();
    assert!(ids.contains(&primary.id) && ids.contains(&replica.id));
    assert!(ended.iter().all(|e| e.time == 5 * MIN));
}

#[test]
fn meetings_that_ended_while_down_report_at_restore() {
    let mut p = plane();
    let m = create_notified(&mut p, "m", 0);
    p.take_changes();
    let snapshot = Snapshot {
        meetings: vec![m.clone()],
        attendees: vec![],
    };
    let mut q = plane();
    q.load_snapshot(snapshot, 25 * 60 * MIN);
    let got = events(&mut q);
    assert_eq!(kinds(&got), [EventKind::MeetingEnded]);
    assert_eq!(got[0].meeting.meeting_id, m.id);
}

#[test]
fn connected_attendees_leave_before_their_meeting_ends_whatever_ends_it() {
    let mut p = plane();
    let primary = create_notified(&mut p, "primary", 0);
    let replica = replica_of(&mut p, primary.id, 0).unwrap();
    // The replica has no target of its own: give every meeting one.
    p.set_event_targets(vec![EventTarget::Webhook("http://127.0.0.1:9/h".into())]);
    let alice = attendee(&mut p, primary.id, "alice", 0).unwrap();
    let bob = attendee(&mut p, primary.id, "bob", 0).unwrap();
    let rita = attendee(&mut p, replica.id, "rita", 0).unwrap();
    events(&mut p);
    for (m, a, ext) in [
        (primary.id, alice.id, "alice"),
        (primary.id, bob.id, "bob"),
        (replica.id, rita.id, "rita"),
    ] {
        p.attendee_connected(m, a, 1);
        p.record_media_event(m, EventKind::AttendeeJoined, a, ext, 1);
    }
    // Bob leaves on his own: reported once, by the media plane.
    p.attendee_disconnected(primary.id, bob.id, 2);
    p.record_media_event(primary.id, EventKind::AttendeeLeft, bob.id, "bob", 2);
    events(&mut p);
    // 24 hours: alice (primary) and rita (replica) are still connected.
    p.sweep(24 * 60 * MIN);
    let ended = events(&mut p);
    let seen: Vec<(EventKind, MeetingId, Option<String>)> = ended
        .iter()
        .map(|e| {
            let who = e.attendee.as_ref().map(|a| a.external_user_id.clone());
            (e.kind, e.meeting.meeting_id, who)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (EventKind::AttendeeLeft, replica.id, Some("rita".into())),
            (EventKind::MeetingEnded, replica.id, None),
            (EventKind::AttendeeLeft, primary.id, Some("alice".into())),
            (EventKind::MeetingEnded, primary.id, None),
        ]
    );
    // The media plane's departures (and anything else) about the ended meetings: no events.
    p.record_media_event(primary.id, EventKind::AttendeeLeft, alice.id, "alice", 3);
    p.record_media_event(replica.id, EventKind::AttendeeDropped, rita.id, "rita", 3);
    p.record_media_event(primary.id, EventKind::AttendeeJoined, alice.id, "alice", 3);
    assert!(events(&mut p).is_empty());
}

#[test]
fn a_connected_attendee_that_is_deleted_leaves_first_and_once() {
    let mut p = plane();
    let m = create_notified(&mut p, "m", 0);
    let alice = attendee(&mut p, m.id, "alice", 0).unwrap();
    let bob = attendee(&mut p, m.id, "bob", 0).unwrap();
    p.record_media_event(m.id, EventKind::AttendeeJoined, alice.id, "alice", 1);
    p.record_media_event(m.id, EventKind::AttendeeVideoStarted, alice.id, "alice", 1);
    events(&mut p);
    p.delete_attendee(m.id, alice.id, 2).unwrap();
    // Bob was never connected: only deleted.
    p.delete_attendee(m.id, bob.id, 2).unwrap();
    let got = events(&mut p);
    assert_eq!(
        got.iter()
            .map(|e| (e.kind, external_user_id(e)))
            .collect::<Vec<_>>(),
        [
            (EventKind::AttendeeLeft, "alice".to_owned()),
            (EventKind::AttendeeDeleted, "alice".to_owned()),
            (EventKind::AttendeeDeleted, "bob".to_owned()),
        ]
    );
    // The media plane then closes alice's connection and reports it: not an event again.
    p.record_media_event(m.id, EventKind::AttendeeVideoStopped, alice.id, "alice", 3);
    p.record_media_event(m.id, EventKind::AttendeeLeft, alice.id, "alice", 3);
    assert!(events(&mut p).is_empty());
    // The meeting ends with nobody connected: just MeetingEnded.
    p.delete_meeting(m.id, 4).unwrap();
    assert_eq!(kinds(&events(&mut p)), [EventKind::MeetingEnded]);
}

#[test]
fn target_keys_round_trip() {
    for t in [
        EventTarget::Sqs(QUEUE.into()),
        EventTarget::Sns("arn:aws:sns:us-east-1:1:t".into()),
        EventTarget::Lambda("arn:aws:lambda:us-east-1:1:function:f".into()),
        EventTarget::EventBridge,
        EventTarget::Webhook("https://example.com/a:b".into()),
    ] {
        assert_eq!(EventTarget::from_key(&t.key()), Some(t));
    }
    assert_eq!(EventTarget::from_key("smtp:x"), None);
    assert_eq!(EventKind::ALL.len(), 17);
    // Stored records name kinds by a code: distinct, and each maps back.
    let codes: std::collections::HashSet<u8> = EventKind::ALL.iter().map(|k| k.code()).collect();
    assert_eq!(codes.len(), EventKind::ALL.len());
    assert!(
        EventKind::ALL
            .iter()
            .all(|k| EventKind::from_code(k.code()) == Some(*k))
    );
    assert_eq!(EventKind::from_code(0), None);
    assert!(
        EventKind::ALL
            .iter()
            .all(|k| k.event_type().starts_with("chime:"))
    );
}
