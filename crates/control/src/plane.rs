//! The control-plane state machine.
//!
//! `ControlPlane` owns every live meeting and attendee in memory. Each operation takes the
//! current time as an argument, mutates the state, and queues two kinds of output that the
//! caller drains after every call:
//!
//! * [`Change`]s, to be written to the store (in order, before the caller answers the client);
//! * [`Notice`]s, for the live meeting plane (disconnect a deleted attendee, end a meeting...).
//!
//! Nothing here reads a clock, a socket or a file, so tests drive it with a simulated clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::error::ControlError;
use crate::event::{
    Event, EventAttendee, EventId, EventKind, EventMeeting, EventTarget, EventTranscription,
};
use crate::ids::{AttendeeId, MeetingId};
use crate::model::{
    Attendee, Capabilities, ContentResolution, EpochMillis, Meeting, MeetingFeatures, MeetingSpec,
    RequestedAttendee, Tag, Transcription, VideoResolution,
};

/// Quotas and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Active meetings per account (replicas included). Chime's default is 250.
    pub max_active_meetings: usize,
    /// Replica meetings per primary. Chime's default is 4, adjustable up to 40.
    pub max_replicas_per_primary: usize,
    /// Attendees per meeting when `MeetingFeatures.Attendee.MaxCount` is not given.
    pub max_attendees: usize,
    /// Upper bound for `MaxCount` when video is FHD or content is UHD (the docs say 25).
    pub high_resolution_max_attendees: u32,
    /// A primary meeting ends after this long with no attendee connected.
    pub idle_timeout_ms: u64,
    /// Every meeting ends this long after it was created.
    pub max_duration_ms: u64,
    /// Most tags a meeting may carry.
    pub max_tags: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_active_meetings: 250,
            max_replicas_per_primary: 4,
            max_attendees: 250,
            high_resolution_max_attendees: 25,
            idle_timeout_ms: 5 * 60 * 1000,
            max_duration_ms: 24 * 60 * 60 * 1000,
            max_tags: 50,
        }
    }
}

/// A state change to persist. `RemoveMeeting` also removes the meeting's attendees. `Event`
/// goes to the outbox, in the same transaction as the changes queued with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    PutMeeting(Box<Meeting>),
    RemoveMeeting(MeetingId),
    PutAttendee(Attendee),
    RemoveAttendee(MeetingId, AttendeeId),
    Event(Box<Event>),
}

/// Why a meeting ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// DeleteMeeting.
    Deleted,
    /// No attendee connected for the idle timeout.
    Idle,
    /// The maximum meeting duration elapsed.
    MaxDuration,
    /// This replica's primary meeting ended.
    PrimaryEnded,
}

/// Something the live meeting plane must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    MeetingEnded {
        meeting: MeetingId,
        reason: EndReason,
    },
    AttendeeDeleted {
        meeting: MeetingId,
        attendee: AttendeeId,
    },
    CapabilitiesChanged {
        meeting: MeetingId,
        attendee: AttendeeId,
        capabilities: Capabilities,
    },
}

/// CreateMeeting input after wire validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateMeeting {
    /// `None` when the caller sent no token: then there is no idempotency.
    pub client_request_token: Option<String>,
    pub spec: MeetingSpec,
}

/// One attendee to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeRequest {
    pub external_user_id: String,
    pub capabilities: Option<Capabilities>,
}

/// One item of a batch: a valid request, or the item's ExternalUserId (when readable) and why
/// it failed wire validation.
pub type AttendeeItem = Result<AttendeeRequest, (Option<String>, ControlError)>;

impl RequestedAttendee {
    /// How idempotency remembers one batch item.
    pub fn of(item: &AttendeeItem) -> Self {
        match item {
            Ok(request) => RequestedAttendee::Valid {
                external_user_id: request.external_user_id.clone(),
                capabilities: request.capabilities,
            },
            Err((external_user_id, error)) => RequestedAttendee::Invalid {
                external_user_id: external_user_id.clone(),
                reason: error.to_string(),
            },
        }
    }
}

/// Result of a batch creation: the created (or existing) attendees and the failed items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub attendees: Vec<Attendee>,
    /// Failed items: the ExternalUserId when one was readable, and why.
    pub errors: Vec<(Option<String>, ControlError)>,
}

/// One page of ListAttendees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeePage {
    pub attendees: Vec<Attendee>,
    /// Sequence number to continue after, when more attendees remain.
    pub next_after: Option<u64>,
}

/// Who is calling: the control region is the SigV4 scope region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub region: String,
}

/// Everything persisted, as loaded at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub meetings: Vec<Meeting>,
    pub attendees: Vec<Attendee>,
}

struct LiveMeeting {
    meeting: Meeting,
    attendees: HashMap<AttendeeId, Attendee>,
    /// Creation order: seq -> attendee.
    order: BTreeMap<u64, AttendeeId>,
    /// Lower-cased ExternalUserId -> attendee (ExternalUserId is case-insensitive).
    by_external: HashMap<String, AttendeeId>,
    next_seq: u64,
    replicas: BTreeSet<MeetingId>,
    /// Open connections per attendee, as reported by the media plane.
    connections: HashMap<AttendeeId, u32>,
    /// What its events carry and where they go (`None`: nowhere, so none is written).
    events: Option<Arc<EventMeeting>>,
    /// Who the events reported as joined and not yet departed, with the ExternalUserId of
    /// the report: keyed by attendee and content share (`true` for `<id>#content`). When the
    /// meeting ends (or an attendee is deleted) they are reported as departed right away.
    present: BTreeMap<(AttendeeId, bool), String>,
}

impl LiveMeeting {
    fn new(meeting: Meeting, global_targets: &[EventTarget]) -> Self {
        LiveMeeting {
            events: EventMeeting::of(&meeting, global_targets),
            present: BTreeMap::new(),
            meeting,
            attendees: HashMap::new(),
            order: BTreeMap::new(),
            by_external: HashMap::new(),
            next_seq: 1,
            replicas: BTreeSet::new(),
            connections: HashMap::new(),
        }
    }

    fn insert_attendee(&mut self, attendee: Attendee) {
        self.next_seq = self.next_seq.max(attendee.seq + 1);
        self.order.insert(attendee.seq, attendee.id);
        self.by_external
            .insert(attendee.external_user_id.to_lowercase(), attendee.id);
        self.attendees.insert(attendee.id, attendee);
    }

    fn remove_attendee(&mut self, id: AttendeeId) -> Option<Attendee> {
        let attendee = self.attendees.remove(&id)?;
        self.order.remove(&attendee.seq);
        self.by_external
            .remove(&attendee.external_user_id.to_lowercase());
        Some(attendee)
    }

    /// `MaxCount` when given, but never above the configured limit: creation refuses a larger
    /// `MaxCount`, and a meeting stored before the limit was lowered obeys the new one.
    fn attendee_limit(&self, limits: &Limits) -> usize {
        self.meeting
            .spec
            .features
            .as_ref()
            .and_then(MeetingFeatures::max_count)
            .map_or(limits.max_attendees, |n| {
                (n as usize).min(limits.max_attendees)
            })
    }

    /// Why this meeting has ended by `now` on its own timers, if it has.
    fn expiry(&self, limits: &Limits, now: EpochMillis) -> Option<EndReason> {
        if self.meeting.is_replica() {
            // Replicas end only with their primary.
            return None;
        }
        if now
            >= self
                .meeting
                .created_at
                .saturating_add(limits.max_duration_ms)
        {
            return Some(EndReason::MaxDuration);
        }
        match self.meeting.idle_since {
            Some(since) if now >= since.saturating_add(limits.idle_timeout_ms) => {
                Some(EndReason::Idle)
            }
            _ => None,
        }
    }
}

/// The control plane's state machine. See the module docs for the contract.
pub struct ControlPlane {
    limits: Limits,
    account_id: String,
    rng: Box<dyn RngCore + Send>,
    meetings: HashMap<MeetingId, LiveMeeting>,
    request_tokens: HashMap<String, MeetingId>,
    attendee_meetings: HashMap<AttendeeId, MeetingId>,
    changes: Vec<Change>,
    notices: Vec<Notice>,
    /// Targets every event goes to besides the meeting's own (webhooks, EventBridge).
    global_targets: Vec<EventTarget>,
}

impl ControlPlane {
    /// An empty control plane.
    pub fn new(limits: Limits, account_id: String, rng: Box<dyn RngCore + Send>) -> Self {
        ControlPlane {
            limits,
            account_id,
            rng,
            meetings: HashMap::new(),
            request_tokens: HashMap::new(),
            attendee_meetings: HashMap::new(),
            changes: Vec::new(),
            notices: Vec::new(),
            global_targets: Vec::new(),
        }
    }

    /// Targets every meeting's events go to, in addition to its `NotificationsConfiguration`
    /// (the configured webhooks and EventBridge). Set it before [`ControlPlane::load_snapshot`]
    /// so that meetings ending at start-up report to them too.
    pub fn set_event_targets(&mut self, targets: Vec<EventTarget>) {
        self.global_targets = targets;
        for live in self.meetings.values_mut() {
            live.events = EventMeeting::of(&live.meeting, &self.global_targets);
        }
    }

    /// Rebuilds the state from the store after a restart. Nobody is connected after a restart,
    /// so a meeting that had connections starts its idle timer at `now`; meetings whose timers
    /// ran out while the server was down end at once. Drain the changes afterwards.
    pub fn restore(
        limits: Limits,
        account_id: String,
        rng: Box<dyn RngCore + Send>,
        snapshot: Snapshot,
        now: EpochMillis,
    ) -> Self {
        let mut plane = ControlPlane::new(limits, account_id, rng);
        plane.load_snapshot(snapshot, now);
        plane
    }

    /// What [`ControlPlane::restore`] does, on a plane made with [`ControlPlane::new`] (and
    /// configured, e.g. with [`ControlPlane::set_event_targets`]). Drain the changes afterwards.
    pub fn load_snapshot(&mut self, snapshot: Snapshot, now: EpochMillis) {
        self.load(snapshot, HashMap::new(), now);
    }

    /// Replaces the persisted state with `snapshot`, for when memory has run ahead of the
    /// store (a commit failed) and must become equal to it again. What exists only in memory
    /// survives: the connection counts of attendees that still exist (the media plane still
    /// holds those connections, and the idle rule depends on them), the contexts of recently
    /// ended meetings, the limits, event targets and random generator. Changes and notices
    /// still queued are dropped: they describe state that is being thrown away. Drain the
    /// changes afterwards (idle timers brought in line with the connections, expired meetings).
    pub fn reload(&mut self, snapshot: Snapshot, now: EpochMillis) {
        let connections: HashMap<MeetingId, HashMap<AttendeeId, u32>> = self
            .meetings
            .iter_mut()
            .filter(|(_, live)| !live.connections.is_empty())
            .map(|(id, live)| (*id, std::mem::take(&mut live.connections)))
            .collect();
        self.meetings.clear();
        self.request_tokens.clear();
        self.attendee_meetings.clear();
        self.changes.clear();
        self.notices.clear();
        self.load(snapshot, connections, now);
    }

    /// Builds the indexes from `snapshot`, with the given open connections per meeting. A
    /// meeting's idle timer runs exactly when nobody is connected; records that disagree are
    /// corrected (and the correction queued for the store).
    fn load(
        &mut self,
        snapshot: Snapshot,
        mut connections: HashMap<MeetingId, HashMap<AttendeeId, u32>>,
        now: EpochMillis,
    ) {
        let order: Vec<MeetingId> = snapshot.meetings.iter().map(|m| m.id).collect();
        for meeting in snapshot.meetings {
            if let Some(token) = &meeting.client_request_token {
                self.request_tokens.insert(token.clone(), meeting.id);
            }
            let live = LiveMeeting::new(meeting, &self.global_targets);
            self.meetings.insert(live.meeting.id, live);
        }
        for attendee in snapshot.attendees {
            if let Some(live) = self.meetings.get_mut(&attendee.meeting_id) {
                self.attendee_meetings
                    .insert(attendee.id, attendee.meeting_id);
                live.insert_attendee(attendee);
            }
        }
        for id in order {
            let Some(live) = self.meetings.get_mut(&id) else {
                continue;
            };
            if let Some(mut open) = connections.remove(&id) {
                open.retain(|attendee, _| live.attendees.contains_key(attendee));
                live.connections = open;
            }
            let connected = !live.connections.is_empty();
            let fixed = match (connected, live.meeting.idle_since) {
                (false, None) => Some(Some(now)),
                (true, Some(_)) => Some(None),
                _ => None,
            };
            if let Some(idle_since) = fixed {
                live.meeting.idle_since = idle_since;
                self.changes
                    .push(Change::PutMeeting(Box::new(live.meeting.clone())));
            }
        }
        let replicas: Vec<(MeetingId, MeetingId)> = self
            .meetings
            .values()
            .filter_map(|m| Some((m.meeting.id, m.meeting.spec.primary_meeting_id?)))
            .collect();
        for (replica, primary) in replicas {
            match self.meetings.get_mut(&primary) {
                Some(p) => {
                    p.replicas.insert(replica);
                }
                // Deletions are atomic, so this only happens with a damaged database.
                None => self.end_meeting(replica, EndReason::PrimaryEnded, now),
            }
        }
        self.sweep(now);
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Store changes queued by the previous calls, in order.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Notices for the live meeting plane queued by the previous calls, in order.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Number of live meetings.
    pub fn meeting_count(&self) -> usize {
        self.meetings.len()
    }

    /// Ends every meeting whose timers have run out by `now`.
    pub fn sweep(&mut self, now: EpochMillis) {
        let expired: Vec<(MeetingId, EndReason)> = self
            .meetings
            .values()
            .filter_map(|m| Some((m.meeting.id, m.expiry(&self.limits, now)?)))
            .collect();
        for (id, reason) in expired {
            self.end_meeting(id, reason, now);
        }
    }

    /// The earliest time at which `sweep` would end a meeting.
    pub fn next_deadline(&self) -> Option<EpochMillis> {
        self.meetings
            .values()
            .filter(|m| !m.meeting.is_replica())
            .map(|m| {
                let end = m
                    .meeting
                    .created_at
                    .saturating_add(self.limits.max_duration_ms);
                match m.meeting.idle_since {
                    Some(since) => end.min(since.saturating_add(self.limits.idle_timeout_ms)),
                    None => end,
                }
            })
            .min()
    }

    // ----- meetings -----

    /// CreateMeeting.
    pub fn create_meeting(
        &mut self,
        request: CreateMeeting,
        caller: &Caller,
        now: EpochMillis,
    ) -> Result<Meeting, ControlError> {
        self.create(request, None, caller, now)
    }

    /// CreateMeetingWithAttendees: the meeting, then its attendees as BatchCreateAttendee
    /// would add them. The ClientRequestToken covers the attendees too: a repeat with the same
    /// parameters returns the same meeting and, by ExternalUserId idempotency, the same
    /// attendees (an attendee deleted since is created again, as CreateAttendee would); a
    /// repeat with other attendees, or a token first used by CreateMeeting, is a conflict.
    pub fn create_meeting_with_attendees(
        &mut self,
        request: CreateMeeting,
        items: Vec<AttendeeItem>,
        caller: &Caller,
        now: EpochMillis,
    ) -> Result<(Meeting, BatchOutcome), ControlError> {
        let requested = items.iter().map(RequestedAttendee::of).collect();
        let meeting = self.create(request, Some(requested), caller, now)?;
        let outcome = self.batch_create_attendee(meeting.id, items, now)?;
        Ok((meeting, outcome))
    }

    fn create(
        &mut self,
        request: CreateMeeting,
        requested_attendees: Option<Vec<RequestedAttendee>>,
        caller: &Caller,
        now: EpochMillis,
    ) -> Result<Meeting, ControlError> {
        if let Some(token) = &request.client_request_token
            && let Some(existing) = self.request_tokens.get(token).copied()
            && let Ok(live) = self.live(existing, now)
        {
            let same = live.meeting.spec == request.spec
                && live.meeting.requested_attendees == requested_attendees;
            return if same {
                Ok(live.meeting.clone())
            } else {
                Err(ControlError::IdempotencyMismatch {
                    token: token.clone(),
                    meeting: existing,
                })
            };
        }
        let features = request.spec.features();
        // The configured attendee limit is this server's capacity: a Chime user asking for more
        // would only learn it from LimitExceeded later, so say it now, as for the FHD cap.
        if let Some(n) = features.max_count()
            && n as usize > self.limits.max_attendees
        {
            return Err(ControlError::Invalid(format!(
                "MeetingFeatures.Attendee.MaxCount must be at most {}, the attendee limit of this server (got {n})",
                self.limits.max_attendees
            )));
        }
        if features.is_high_resolution() {
            let cap = self.limits.high_resolution_max_attendees;
            match features.max_count() {
                None => {
                    return Err(ControlError::Invalid(format!(
                        "MeetingFeatures.Attendee.MaxCount is required when Video.MaxResolution is FHD or Content.MaxResolution is UHD, and must be at most {cap}"
                    )));
                }
                Some(n) if n > cap => {
                    return Err(ControlError::Invalid(format!(
                        "MeetingFeatures.Attendee.MaxCount must be at most {cap} when Video.MaxResolution is FHD or Content.MaxResolution is UHD (got {n})"
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(primary) = request.spec.primary_meeting_id {
            let limit = self.limits.max_replicas_per_primary;
            let live = self
                .live(primary, now)
                .map_err(|_| ControlError::PrimaryNotFound(primary.to_string()))?;
            if live.meeting.is_replica() {
                return Err(ControlError::PrimaryIsReplica(primary));
            }
            if live.replicas.len() >= limit {
                return Err(ControlError::TooManyReplicas { primary, limit });
            }
        }
        if self.meetings.len() >= self.limits.max_active_meetings {
            self.sweep(now);
            if self.meetings.len() >= self.limits.max_active_meetings {
                return Err(ControlError::TooManyMeetings {
                    limit: self.limits.max_active_meetings,
                });
            }
        }
        let mut id = MeetingId::random_v4(&mut *self.rng);
        while self.meetings.contains_key(&id) {
            id = MeetingId::random_v4(&mut *self.rng);
        }
        let meeting = Meeting {
            id,
            tags: request.spec.tags.clone(),
            spec: request.spec,
            control_region: caller.region.clone(),
            account_id: self.account_id.clone(),
            client_request_token: request.client_request_token,
            created_at: now,
            idle_since: Some(now),
            transcription: None,
            requested_attendees,
        };
        if let Some(token) = &meeting.client_request_token {
            self.request_tokens.insert(token.clone(), id);
        }
        if let Some(primary) = meeting.spec.primary_meeting_id
            && let Some(p) = self.meetings.get_mut(&primary)
        {
            p.replicas.insert(id);
        }
        self.changes
            .push(Change::PutMeeting(Box::new(meeting.clone())));
        let live = LiveMeeting::new(meeting.clone(), &self.global_targets);
        if let Some(source) = live.events.clone() {
            self.emit(&source, EventKind::MeetingStarted, None, None, now);
        }
        self.meetings.insert(id, live);
        Ok(meeting)
    }

    /// GetMeeting.
    pub fn get_meeting(
        &mut self,
        id: MeetingId,
        now: EpochMillis,
    ) -> Result<Meeting, ControlError> {
        Ok(self.live(id, now)?.meeting.clone())
    }

    /// DeleteMeeting: ends the meeting, its attendees and, for a primary, its replicas.
    pub fn delete_meeting(&mut self, id: MeetingId, now: EpochMillis) -> Result<(), ControlError> {
        self.live(id, now)?;
        self.end_meeting(id, EndReason::Deleted, now);
        Ok(())
    }

    // ----- attendees -----

    /// CreateAttendee. An ExternalUserId that already has an attendee in this meeting
    /// (compared case-insensitively) returns that attendee.
    pub fn create_attendee(
        &mut self,
        meeting: MeetingId,
        request: AttendeeRequest,
        now: EpochMillis,
    ) -> Result<Attendee, ControlError> {
        self.live(meeting, now)?;
        self.add_attendee(meeting, request, now)
    }

    /// BatchCreateAttendee: per-item failures are reported, not raised. Items that already
    /// failed wire validation are passed in as errors so that the outcome keeps their order.
    pub fn batch_create_attendee(
        &mut self,
        meeting: MeetingId,
        items: Vec<AttendeeItem>,
        now: EpochMillis,
    ) -> Result<BatchOutcome, ControlError> {
        self.live(meeting, now)?;
        let mut outcome = BatchOutcome::default();
        for item in items {
            let request = match item {
                Ok(request) => request,
                Err(failed) => {
                    outcome.errors.push(failed);
                    continue;
                }
            };
            let external_user_id = request.external_user_id.clone();
            match self.add_attendee(meeting, request, now) {
                Ok(attendee) => outcome.attendees.push(attendee),
                Err(error) => outcome.errors.push((Some(external_user_id), error)),
            }
        }
        Ok(outcome)
    }

    /// GetAttendee.
    pub fn get_attendee(
        &mut self,
        meeting: MeetingId,
        attendee: AttendeeId,
        now: EpochMillis,
    ) -> Result<Attendee, ControlError> {
        self.live(meeting, now)?
            .attendees
            .get(&attendee)
            .cloned()
            .ok_or(ControlError::AttendeeNotFound { meeting, attendee })
    }

    /// ListAttendees: attendees in creation order after sequence number `after`.
    pub fn list_attendees(
        &mut self,
        meeting: MeetingId,
        after: Option<u64>,
        max: usize,
        now: EpochMillis,
    ) -> Result<AttendeePage, ControlError> {
        let live = self.live(meeting, now)?;
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        let mut iter = live.order.range(start..);
        let attendees: Vec<Attendee> = iter
            .by_ref()
            .take(max)
            .map(|(_, id)| live.attendees[id].clone())
            .collect();
        let next_after = match iter.next() {
            Some(_) => attendees.last().map(|a| a.seq),
            None => None,
        };
        Ok(AttendeePage {
            attendees,
            next_after,
        })
    }

    /// DeleteAttendee: the join token stops working and live connections are closed.
    pub fn delete_attendee(
        &mut self,
        meeting: MeetingId,
        attendee: AttendeeId,
        now: EpochMillis,
    ) -> Result<(), ControlError> {
        let live = self.live(meeting, now)?;
        let removed = live
            .remove_attendee(attendee)
            .ok_or(ControlError::AttendeeNotFound { meeting, attendee })?;
        // Still connected: it leaves first (its connections are closed now), and the media
        // plane's later report of that departure is not an event again (see
        // `record_media_event`: the attendee no longer exists).
        let departed: Vec<((AttendeeId, bool), String)> = {
            let keys = [(attendee, false), (attendee, true)];
            keys.into_iter()
                .filter_map(|k| live.present.remove(&k).map(|ext| (k, ext)))
                .collect()
        };
        let source = live.events.clone();
        self.attendee_meetings.remove(&attendee);
        self.changes.push(Change::RemoveAttendee(meeting, attendee));
        if let Some(source) = source {
            let at = self.emit_departures(&source, departed, now);
            let who = EventAttendee {
                id: attendee,
                content: false,
                external_user_id: removed.external_user_id,
            };
            self.emit(&source, EventKind::AttendeeDeleted, Some(who), None, at);
        }
        self.notices
            .push(Notice::AttendeeDeleted { meeting, attendee });
        Ok(())
    }

    /// UpdateAttendeeCapabilities.
    pub fn update_attendee_capabilities(
        &mut self,
        meeting: MeetingId,
        attendee: AttendeeId,
        capabilities: Capabilities,
        now: EpochMillis,
    ) -> Result<Attendee, ControlError> {
        let live = self.live(meeting, now)?;
        check_capabilities(&live.meeting.spec.features(), &capabilities)?;
        let record = live
            .attendees
            .get_mut(&attendee)
            .ok_or(ControlError::AttendeeNotFound { meeting, attendee })?;
        record.capabilities = capabilities;
        let record = record.clone();
        self.changes.push(Change::PutAttendee(record.clone()));
        self.notices.push(Notice::CapabilitiesChanged {
            meeting,
            attendee,
            capabilities,
        });
        Ok(record)
    }

    /// BatchUpdateAttendeeCapabilitiesExcept: applies to every current attendee not excluded.
    pub fn batch_update_capabilities_except(
        &mut self,
        meeting: MeetingId,
        excluded: &[AttendeeId],
        capabilities: Capabilities,
        now: EpochMillis,
    ) -> Result<(), ControlError> {
        let live = self.live(meeting, now)?;
        check_capabilities(&live.meeting.spec.features(), &capabilities)?;
        let mut updated = Vec::new();
        for seq_id in live.order.values() {
            if excluded.contains(seq_id) {
                continue;
            }
            let record = live
                .attendees
                .get_mut(seq_id)
                .expect("order and attendees hold the same ids");
            record.capabilities = capabilities;
            updated.push(record.clone());
        }
        for record in updated {
            self.notices.push(Notice::CapabilitiesChanged {
                meeting,
                attendee: record.id,
                capabilities,
            });
            self.changes.push(Change::PutAttendee(record));
        }
        Ok(())
    }

    // ----- transcription -----

    /// StartMeetingTranscription: starts, or updates a running configuration.
    pub fn start_transcription(
        &mut self,
        meeting: MeetingId,
        transcription: Transcription,
        now: EpochMillis,
    ) -> Result<(), ControlError> {
        let live = self.live(meeting, now)?;
        let details = EventTranscription {
            region: transcription.region.clone(),
            configuration_json: transcription.configuration_json.clone(),
        };
        live.meeting.transcription = Some(transcription);
        let record = live.meeting.clone();
        self.changes.push(Change::PutMeeting(Box::new(record)));
        // A second start on a running transcription is an update: Chime reports it again.
        if let Some(source) = self.events_of(meeting) {
            let kind = EventKind::TranscriptionStarted;
            self.emit(&source, kind, None, Some(details), now);
        }
        Ok(())
    }

    /// StopMeetingTranscription. Stopping a meeting with no transcription is a no-op.
    /// Returns the configuration that was running, if any.
    pub fn stop_transcription(
        &mut self,
        meeting: MeetingId,
        now: EpochMillis,
    ) -> Result<Option<Transcription>, ControlError> {
        let live = self.live(meeting, now)?;
        let previous = live.meeting.transcription.take();
        if let Some(stopped) = &previous {
            let record = live.meeting.clone();
            self.changes.push(Change::PutMeeting(Box::new(record)));
            if let Some(source) = self.events_of(meeting) {
                let details = EventTranscription {
                    region: stopped.region.clone(),
                    configuration_json: stopped.configuration_json.clone(),
                };
                let kind = EventKind::TranscriptionStopped;
                self.emit(&source, kind, None, Some(details), now);
            }
        }
        Ok(previous)
    }

    // ----- tags -----

    /// TagResource: adds or replaces tags; more than the limit in total is refused.
    pub fn tag_resource(
        &mut self,
        arn: &str,
        tags: Vec<Tag>,
        now: EpochMillis,
    ) -> Result<(), ControlError> {
        let max_tags = self.limits.max_tags;
        let live = self.live_by_arn(arn, now)?;
        let mut merged = live.meeting.tags.clone();
        for tag in tags {
            match merged.iter_mut().find(|t| t.key == tag.key) {
                Some(existing) => existing.value = tag.value,
                None => merged.push(tag),
            }
        }
        if merged.len() > max_tags {
            return Err(ControlError::TooManyTags {
                count: merged.len(),
                limit: max_tags,
            });
        }
        live.meeting.tags = merged;
        let record = live.meeting.clone();
        self.changes.push(Change::PutMeeting(Box::new(record)));
        Ok(())
    }

    /// UntagResource: keys that are absent are ignored.
    pub fn untag_resource(
        &mut self,
        arn: &str,
        keys: &[String],
        now: EpochMillis,
    ) -> Result<(), ControlError> {
        let live = self.live_by_arn(arn, now)?;
        let before = live.meeting.tags.len();
        live.meeting.tags.retain(|t| !keys.contains(&t.key));
        if live.meeting.tags.len() != before {
            let record = live.meeting.clone();
            self.changes.push(Change::PutMeeting(Box::new(record)));
        }
        Ok(())
    }

    /// ListTagsForResource.
    pub fn list_tags(&mut self, arn: &str, now: EpochMillis) -> Result<Vec<Tag>, ControlError> {
        Ok(self.live_by_arn(arn, now)?.meeting.tags.clone())
    }

    // ----- media plane -----

    /// Finds the attendee a join token belongs to, in the given meeting. The token's secret is
    /// compared in constant time.
    pub fn authenticate(
        &mut self,
        meeting: MeetingId,
        join_token: &str,
        now: EpochMillis,
    ) -> Option<Attendee> {
        let attendee = attendee_id_of_token(join_token)?;
        let live = self.live(meeting, now).ok()?;
        let record = live.attendees.get(&attendee)?;
        bool::from(record.join_token.as_bytes().ct_eq(join_token.as_bytes()))
            .then(|| record.clone())
    }

    /// How many attendees a live meeting may hold at once (`MaxCount`, bounded by the
    /// configured limit).
    pub fn attendee_capacity(&mut self, meeting: MeetingId, now: EpochMillis) -> Option<usize> {
        let limits = self.limits.clone();
        let live = self.live(meeting, now).ok()?;
        Some(live.attendee_limit(&limits))
    }

    /// Finds the attendee a join token belongs to, in whatever meeting.
    pub fn authenticate_any(&mut self, join_token: &str, now: EpochMillis) -> Option<Attendee> {
        let attendee = attendee_id_of_token(join_token)?;
        let meeting = *self.attendee_meetings.get(&attendee)?;
        self.authenticate(meeting, join_token, now)
    }

    /// The media plane reports that a connection of this attendee opened.
    pub fn attendee_connected(
        &mut self,
        meeting: MeetingId,
        attendee: AttendeeId,
        now: EpochMillis,
    ) {
        let Ok(live) = self.live(meeting, now) else {
            return;
        };
        *live.connections.entry(attendee).or_insert(0) += 1;
        if live.meeting.idle_since.take().is_some() {
            let record = live.meeting.clone();
            self.changes.push(Change::PutMeeting(Box::new(record)));
        }
    }

    /// The media plane reports that a connection of this attendee closed.
    pub fn attendee_disconnected(
        &mut self,
        meeting: MeetingId,
        attendee: AttendeeId,
        now: EpochMillis,
    ) {
        let Some(live) = self.meetings.get_mut(&meeting) else {
            return;
        };
        if let Some(count) = live.connections.get_mut(&attendee) {
            *count -= 1;
            if *count == 0 {
                live.connections.remove(&attendee);
            }
        }
        if live.connections.is_empty() && live.meeting.idle_since.is_none() {
            live.meeting.idle_since = Some(now);
            let record = live.meeting.clone();
            self.changes.push(Change::PutMeeting(Box::new(record)));
        }
    }

    /// A join token was accepted on the signaling WebSocket (`chime:AttendeeAuthorized`);
    /// `content` is true for the content-share connection (`<AttendeeId>#content`).
    pub fn attendee_authorized(
        &mut self,
        meeting: MeetingId,
        attendee: &Attendee,
        content: bool,
        now: EpochMillis,
    ) {
        let Some(source) = self.events_of(meeting) else {
            return;
        };
        let who = EventAttendee {
            id: attendee.id,
            content,
            external_user_id: if content {
                format!("{}#content", attendee.external_user_id)
            } else {
                attendee.external_user_id.clone()
            },
        };
        self.emit(&source, EventKind::AttendeeAuthorized, Some(who), None, now);
    }

    /// The media plane reports an attendee event (joined, left, dropped, video and content
    /// share). `attendee` is the base attendee; content-share kinds get the `#content` id.
    /// `external_user_id` is as the media plane knows it (with `#content` for content).
    ///
    /// Reports about a meeting that is no longer live, or about an attendee that no longer
    /// exists, are not events: whoever was still connected when the meeting ended (or the
    /// attendee was deleted) was reported as departed in that very transaction, before
    /// `MeetingEnded` (or `AttendeeDeleted`), and the media plane's own departure reports
    /// for them come later.
    pub fn record_media_event(
        &mut self,
        meeting: MeetingId,
        kind: EventKind,
        attendee: AttendeeId,
        external_user_id: &str,
        now: EpochMillis,
    ) {
        let Some(live) = self.meetings.get_mut(&meeting) else {
            return;
        };
        if !live.attendees.contains_key(&attendee) {
            return;
        }
        let content = kind.is_content();
        match kind {
            EventKind::AttendeeJoined | EventKind::AttendeeContentJoined => {
                live.present
                    .insert((attendee, content), external_user_id.to_owned());
            }
            EventKind::AttendeeLeft
            | EventKind::AttendeeDropped
            | EventKind::AttendeeContentLeft
            | EventKind::AttendeeContentDropped => {
                live.present.remove(&(attendee, content));
            }
            _ => {}
        }
        let Some(source) = live.events.clone() else {
            return;
        };
        let who = EventAttendee {
            id: attendee,
            content,
            external_user_id: external_user_id.to_owned(),
        };
        self.emit(&source, kind, Some(who), None, now);
    }

    // ----- internals -----

    /// Where the events of a live meeting go, if anywhere.
    fn events_of(&self, meeting: MeetingId) -> Option<Arc<EventMeeting>> {
        self.meetings.get(&meeting)?.events.clone()
    }

    /// Reports the departures the control plane knows of before an attendee is deleted or a
    /// meeting ends, at `now`. Returns the time of the event that follows them: a millisecond
    /// later when there were any, so that consumers who sort by `detail.timestamp` (delivery
    /// order is not guaranteed) see the departures first.
    fn emit_departures(
        &mut self,
        source: &Arc<EventMeeting>,
        departed: Vec<((AttendeeId, bool), String)>,
        now: EpochMillis,
    ) -> EpochMillis {
        if departed.is_empty() {
            return now;
        }
        for ((id, content), external_user_id) in departed {
            let who = EventAttendee {
                id,
                content,
                external_user_id,
            };
            self.emit(source, departure_kind(content), Some(who), None, now);
        }
        now.saturating_add(1)
    }

    /// Queues an event for the outbox, next to the changes of the same call.
    fn emit(
        &mut self,
        source: &Arc<EventMeeting>,
        kind: EventKind,
        attendee: Option<EventAttendee>,
        transcription: Option<EventTranscription>,
        now: EpochMillis,
    ) {
        self.changes.push(Change::Event(Box::new(Event {
            id: EventId::random(&mut *self.rng),
            kind,
            time: now,
            meeting: source.clone(),
            attendee,
            transcription,
        })));
    }

    /// The live meeting, ending it first if its timers (or its primary's) have run out.
    fn live(&mut self, id: MeetingId, now: EpochMillis) -> Result<&mut LiveMeeting, ControlError> {
        let (expiry, primary) = match self.meetings.get(&id) {
            None => return Err(ControlError::MeetingNotFound(id)),
            Some(live) => (
                live.expiry(&self.limits, now),
                live.meeting.spec.primary_meeting_id,
            ),
        };
        if let Some(reason) = expiry {
            self.end_meeting(id, reason, now);
            return Err(ControlError::MeetingNotFound(id));
        }
        if let Some(primary) = primary
            && let Some(reason) = self
                .meetings
                .get(&primary)
                .and_then(|p| p.expiry(&self.limits, now))
        {
            self.end_meeting(primary, reason, now);
            return Err(ControlError::MeetingNotFound(id));
        }
        self.meetings
            .get_mut(&id)
            .ok_or(ControlError::MeetingNotFound(id))
    }

    fn live_by_arn(
        &mut self,
        arn: &str,
        now: EpochMillis,
    ) -> Result<&mut LiveMeeting, ControlError> {
        let not_found = || ControlError::ResourceNotFound(arn.to_owned());
        let id: MeetingId = arn
            .rsplit_once(":meeting/")
            .and_then(|(_, id)| id.parse().ok())
            .ok_or_else(not_found)?;
        let live = self.live(id, now).map_err(|_| not_found())?;
        if live.meeting.arn() != arn {
            return Err(not_found());
        }
        Ok(live)
    }

    fn add_attendee(
        &mut self,
        meeting: MeetingId,
        request: AttendeeRequest,
        now: EpochMillis,
    ) -> Result<Attendee, ControlError> {
        let limits = &self.limits;
        let live = self
            .meetings
            .get_mut(&meeting)
            .ok_or(ControlError::MeetingNotFound(meeting))?;
        let features = live.meeting.spec.features();
        let capabilities = match request.capabilities {
            Some(c) => {
                check_capabilities(&features, &c)?;
                c
            }
            None => features.default_capabilities(),
        };
        if let Some(existing) = live
            .by_external
            .get(&request.external_user_id.to_lowercase())
        {
            return Ok(live.attendees[existing].clone());
        }
        let limit = live.attendee_limit(limits);
        if live.attendees.len() >= limit {
            return Err(ControlError::MeetingFull { meeting, limit });
        }
        let mut id = AttendeeId::random(&mut *self.rng);
        while self.attendee_meetings.contains_key(&id) {
            id = AttendeeId::random(&mut *self.rng);
        }
        let mut secret = [0u8; 16];
        self.rng.fill_bytes(&mut secret);
        let join_token = URL_SAFE_NO_PAD.encode(format!("{id}:{}", hex::encode(secret)));
        let attendee = Attendee {
            meeting_id: meeting,
            id,
            external_user_id: request.external_user_id,
            join_token,
            capabilities,
            seq: live.next_seq,
        };
        live.insert_attendee(attendee.clone());
        let source = live.events.clone();
        self.attendee_meetings.insert(id, meeting);
        self.changes.push(Change::PutAttendee(attendee.clone()));
        // Only a newly created attendee is reported; an idempotent repeat returned above.
        if let Some(source) = source {
            let who = EventAttendee {
                id,
                content: false,
                external_user_id: attendee.external_user_id.clone(),
            };
            self.emit(&source, EventKind::AttendeeAdded, Some(who), None, now);
        }
        Ok(attendee)
    }

    fn end_meeting(&mut self, id: MeetingId, reason: EndReason, now: EpochMillis) {
        let Some(live) = self.meetings.remove(&id) else {
            return;
        };
        for replica in &live.replicas {
            self.end_meeting(*replica, EndReason::PrimaryEnded, now);
        }
        if let Some(primary) = live.meeting.spec.primary_meeting_id
            && let Some(p) = self.meetings.get_mut(&primary)
        {
            p.replicas.remove(&id);
        }
        for attendee in live.attendees.keys() {
            self.attendee_meetings.remove(attendee);
        }
        if let Some(token) = &live.meeting.client_request_token
            && self.request_tokens.get(token) == Some(&id)
        {
            self.request_tokens.remove(token);
        }
        self.changes.push(Change::RemoveMeeting(id));
        if let Some(source) = &live.events {
            // Whoever is still connected leaves now, before the meeting ends, in the same
            // transaction; the media plane's later reports about this meeting are not events
            // (it is no longer live, see `record_media_event`).
            let at = self.emit_departures(source, live.present.into_iter().collect(), now);
            self.emit(source, EventKind::MeetingEnded, None, None, at);
        }
        self.notices.push(Notice::MeetingEnded {
            meeting: id,
            reason,
        });
    }
}

/// The event of a departure the control plane reports itself (a meeting ended or an attendee
/// was deleted while connected).
fn departure_kind(content: bool) -> EventKind {
    if content {
        EventKind::AttendeeContentLeft
    } else {
        EventKind::AttendeeLeft
    }
}

/// The attendee id encoded in a join token (`base64url(<AttendeeId>:<secret>)`).
pub fn attendee_id_of_token(join_token: &str) -> Option<AttendeeId> {
    if join_token.len() > 2048 {
        return None;
    }
    let decoded = URL_SAFE_NO_PAD.decode(join_token).ok()?;
    let text = std::str::from_utf8(&decoded).ok()?;
    let (id, _secret) = text.split_once(':')?;
    id.parse().ok()
}

/// The documented capability rules, checked against the meeting's features.
pub fn check_capabilities(
    features: &MeetingFeatures,
    capabilities: &Capabilities,
) -> Result<(), ControlError> {
    use crate::model::MediaCapability as C;
    if features.video_resolution() == VideoResolution::None && capabilities.video != C::None {
        return Err(ControlError::Invalid(format!(
            "Capabilities.Video must be None because the meeting's MeetingFeatures.Video.MaxResolution is None (got {})",
            capabilities.video.as_str()
        )));
    }
    if features.content_resolution() == ContentResolution::None && capabilities.content != C::None {
        return Err(ControlError::Invalid(format!(
            "Capabilities.Content must be None because the meeting's MeetingFeatures.Content.MaxResolution is None (got {})",
            capabilities.content.as_str()
        )));
    }
    if capabilities.content.receives() && !capabilities.video.receives() {
        return Err(ControlError::Invalid(format!(
            "Capabilities.Content {} requires Capabilities.Video to be SendReceive or Receive (got {})",
            capabilities.content.as_str(),
            capabilities.video.as_str()
        )));
    }
    Ok(())
}
