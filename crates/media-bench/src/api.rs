//! Meetings and attendees through the server's REST API, with the official AWS SDK for Rust
//! signing with the server's development key pair.

use aws_sdk_chimesdkmeetings::Client;
use aws_sdk_chimesdkmeetings::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_chimesdkmeetings::types::CreateAttendeeRequestItem;

/// The development key pair a carillon server accepts when no credentials are configured.
const ACCESS_KEY_ID: &str = "AKIDCARILLONDEV";
const SECRET_ACCESS_KEY: &str = "carillon-dev-secret";

/// BatchCreateAttendee takes at most this many attendees per call.
const BATCH: usize = 100;

pub struct Api {
    client: Client,
}

/// A created meeting.
pub struct Meeting {
    pub id: String,
    pub signaling_url: String,
}

/// A created attendee: what a client needs to join.
#[derive(Clone)]
pub struct Attendee {
    pub join_token: String,
}

impl Api {
    pub fn new(endpoint: &str) -> Api {
        let config = aws_sdk_chimesdkmeetings::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "carillon-media-load",
            ))
            .endpoint_url(endpoint)
            .build();
        Api {
            client: Client::from_conf(config),
        }
    }

    /// CreateMeeting; a replica when `primary` is given.
    pub async fn create_meeting(
        &self,
        name: &str,
        primary: Option<&str>,
    ) -> Result<Meeting, String> {
        let mut request = self
            .client
            .create_meeting()
            .media_region("us-east-1")
            .external_meeting_id(name);
        if let Some(primary) = primary {
            request = request.primary_meeting_id(primary);
        }
        let out = request.send().await.map_err(|e| {
            format!(
                "CreateMeeting {name}: {}",
                aws_sdk_chimesdkmeetings::error::DisplayErrorContext(e)
            )
        })?;
        let meeting = out.meeting().ok_or("CreateMeeting returned no meeting")?;
        Ok(Meeting {
            id: meeting.meeting_id().unwrap_or_default().to_owned(),
            signaling_url: meeting
                .media_placement()
                .and_then(|p| p.signaling_url())
                .ok_or("CreateMeeting returned no SignalingUrl")?
                .to_owned(),
        })
    }

    /// `count` attendees named `{prefix}-{n}`, created with BatchCreateAttendee.
    pub async fn create_attendees(
        &self,
        meeting: &Meeting,
        prefix: &str,
        count: usize,
    ) -> Result<Vec<Attendee>, String> {
        let mut attendees = Vec::with_capacity(count);
        let mut next = 0;
        while next < count {
            let n = BATCH.min(count - next);
            let mut request = self.client.batch_create_attendee().meeting_id(&meeting.id);
            for i in next..next + n {
                request = request.attendees(
                    CreateAttendeeRequestItem::builder()
                        .external_user_id(format!("{prefix}-{i}"))
                        .build()
                        .map_err(|e| e.to_string())?,
                );
            }
            let out = request.send().await.map_err(|e| {
                format!(
                    "BatchCreateAttendee: {}",
                    aws_sdk_chimesdkmeetings::error::DisplayErrorContext(e)
                )
            })?;
            if let Some(error) = out.errors().first() {
                return Err(format!(
                    "BatchCreateAttendee refused {}: {}",
                    error.external_user_id().unwrap_or_default(),
                    error.error_message().unwrap_or_default()
                ));
            }
            for a in out.attendees() {
                attendees.push(Attendee {
                    join_token: a
                        .join_token()
                        .ok_or("an attendee without JoinToken")?
                        .to_owned(),
                });
            }
            next += n;
        }
        if attendees.len() != count {
            return Err(format!(
                "asked for {count} attendees, got {}",
                attendees.len()
            ));
        }
        Ok(attendees)
    }
}
