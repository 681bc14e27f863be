//! Meeting events on the server side: the media plane's reports and accepted join tokens
//! become control-plane events (and so outbox rows), and the delivery workers start with the
//! node.

use std::sync::Arc;

use carillon_control::{Attendee, ControlPlane, EpochMillis, EventKind, MeetingId};
use carillon_events::{Dispatcher, Policy, SinkSettings, Sinks};
use carillon_media::{MediaEvent, MediaEventKind};
use carillon_store::Store;

use crate::app::App;
use crate::config::EventSettings;

/// The event a media-plane report stands for.
pub fn kind_of(kind: MediaEventKind) -> EventKind {
    match kind {
        MediaEventKind::AttendeeJoined => EventKind::AttendeeJoined,
        MediaEventKind::AttendeeLeft => EventKind::AttendeeLeft,
        MediaEventKind::AttendeeDropped => EventKind::AttendeeDropped,
        MediaEventKind::AttendeeVideoStarted => EventKind::AttendeeVideoStarted,
        MediaEventKind::AttendeeVideoStopped => EventKind::AttendeeVideoStopped,
        MediaEventKind::AttendeeContentJoined => EventKind::AttendeeContentJoined,
        MediaEventKind::AttendeeContentLeft => EventKind::AttendeeContentLeft,
        MediaEventKind::AttendeeContentDropped => EventKind::AttendeeContentDropped,
        MediaEventKind::AttendeeContentVideoStarted => EventKind::AttendeeContentVideoStarted,
        MediaEventKind::AttendeeContentVideoStopped => EventKind::AttendeeContentVideoStopped,
    }
}

/// Records a media-plane report as an event (call inside `App::mutate`).
pub fn record_media_event(plane: &mut ControlPlane, event: &MediaEvent, now: EpochMillis) {
    plane.record_media_event(
        event.meeting,
        kind_of(event.kind),
        event.attendee,
        &event.external_user_id,
        now,
    );
}

/// Records `chime:AttendeeAuthorized` for a join token accepted on the signaling WebSocket.
/// Call it without holding the control-plane lock.
///
/// It runs in the HTTP handler, before the WebSocket upgrade completes: the session is not
/// held up for this commit, but its outcome is not ignored either. A task awaits it and logs
/// a failure (the join itself goes on: the event is then missing, which the log says).
pub fn authorized(app: &App, meeting: MeetingId, attendee: &Attendee, content: bool) {
    let now = app.clock.now_ms();
    let ((), pending) =
        app.mutate(|plane| plane.attendee_authorized(meeting, attendee, content, now));
    let attendee_id = attendee.id;
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(e) = pending.finish().await {
                    tracing::error!(
                        %meeting,
                        attendee = %attendee_id,
                        content,
                        error = %e,
                        "chime:AttendeeAuthorized was not recorded: the store commit failed"
                    );
                }
            });
        }
        Err(_) => {
            // Outside a runtime (tests of the HTTP layer): the store still makes the commit
            // durable on its own, nobody reports a failure.
            drop(pending);
        }
    }
}

/// Starts the delivery workers on the node's store.
pub fn start(app: &Arc<App>, store: Arc<dyn Store>, settings: &EventSettings) -> Arc<Dispatcher> {
    let sinks = Sinks::new(SinkSettings {
        webhook_secret: settings
            .webhook_secret
            .clone()
            .unwrap_or_default()
            .into_bytes(),
        eventbridge_source: settings.eventbridge_source.clone(),
    });
    let policy = Policy {
        max_age_ms: settings.max_age.as_millis() as u64,
        ..Policy::default()
    };
    let clock_app = app.clone();
    let clock: carillon_events::Clock = Arc::new(move || clock_app.clock.now_ms());
    if !settings.webhooks.is_empty() || settings.eventbridge {
        tracing::info!(
            webhooks = settings.webhooks.len(),
            eventbridge = settings.eventbridge,
            "meeting events are delivered to the configured targets"
        );
    }
    Dispatcher::start(store, Arc::new(sinks), policy, clock)
}
