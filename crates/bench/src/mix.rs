//! The signed request mix (phase 2) and the memory fill (phase 3): set-up of the meetings
//! they need, and the pre-signed request lists.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::load::{Plan, send_all};
use crate::sign::{Op, Prepared, Signer};

/// Chime allows 250 attendees per meeting; the mix keeps every meeting well under that.
pub const MAX_ATTENDEES_PER_MEETING: usize = 200;
/// Attendees created in each pool meeting before the mix, for GetAttendee to read.
pub const SEED_ATTENDEES: usize = 10;
/// The mix spreads over at least this many pre-created meetings.
const MIN_POOL_MEETINGS: usize = 250;
/// Distinct GetAttendee and ListAttendees requests, re-sent in a cycle (they are idempotent).
const READ_VARIANTS: usize = 4096;
/// Connections used for set-up work (not measured).
const SETUP_CONNECTIONS: usize = 8;

/// A pre-signed request list: `per_op` requests of each operation, shuffled.
pub struct Mix {
    pub plan: Arc<Plan>,
    pub pool_meetings: usize,
    pub per_op: usize,
}

/// Creates the meeting pool and its seed attendees, then signs `per_op` requests of each of
/// `ops` (CreateMeeting, CreateAttendee, GetAttendee, ListAttendees), in equal shares.
pub async fn prepare(
    addr: SocketAddr,
    signer: &Signer,
    ops: &[Op],
    per_op: usize,
) -> Result<Mix, String> {
    let room = MAX_ATTENDEES_PER_MEETING - SEED_ATTENDEES;
    let attendee_creates = if ops.contains(&Op::CreateAttendee) {
        per_op
    } else {
        0
    };
    let pool = attendee_creates.div_ceil(room).max(MIN_POOL_MEETINGS);
    let meetings = create_meetings(addr, signer, "pool", pool).await?;

    let seeds = meetings
        .iter()
        .enumerate()
        .map(|(m, meeting)| {
            let users = (0..SEED_ATTENDEES).map(|a| format!("seed-{m}-{a}"));
            batch_create_attendees(signer, meeting, users)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut seeded = Vec::with_capacity(pool * SEED_ATTENDEES);
    for (m, body) in send_all(addr, SETUP_CONNECTIONS, seeds)
        .await?
        .iter()
        .enumerate()
    {
        for attendee in batch_attendee_ids(body)? {
            seeded.push((m, attendee));
        }
    }

    // Reads are idempotent: a few thousand distinct ones, re-sent in turn.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut reads = Vec::with_capacity(READ_VARIANTS);
    for _ in 0..READ_VARIANTS {
        let (m, attendee) = &seeded[rng.below(seeded.len())];
        let get = format!("/meetings/{}/attendees/{attendee}", meetings[*m]);
        let list = format!(
            "/meetings/{}/attendees?max-results=10",
            meetings[rng.below(pool)]
        );
        reads.push([
            Arc::new(signer.sign(Op::GetAttendee, Method::GET, &get, Bytes::new())?),
            Arc::new(signer.sign(Op::ListAttendees, Method::GET, &list, Bytes::new())?),
        ]);
    }

    // Writes are all distinct (fresh ExternalMeetingId / ExternalUserId each). CreateAttendee
    // number i goes to pool meeting i % pool: at most ceil(per_op / pool) <= `room` new
    // attendees per meeting, whatever order the requests are sent in.
    let (create_meetings_too, create_attendees_too) = (
        ops.contains(&Op::CreateMeeting),
        ops.contains(&Op::CreateAttendee),
    );
    let writes = sign_parallel(per_op, |i| {
        let meeting = create_meetings_too
            .then(|| create_meeting(signer, &format!("mix-{i}")))
            .transpose()?;
        let attendee = create_attendees_too
            .then(|| create_attendee(signer, &meetings[i % pool], &format!("mix-user-{i}")))
            .transpose()?;
        Ok([meeting, attendee])
    })?;
    let mut requests = Vec::with_capacity(ops.len() * per_op);
    for (i, written) in writes.into_iter().enumerate() {
        requests.extend(written.into_iter().flatten().map(Arc::new));
        let [get, list] = &reads[i % READ_VARIANTS];
        if ops.contains(&Op::GetAttendee) {
            requests.push(get.clone());
        }
        if ops.contains(&Op::ListAttendees) {
            requests.push(list.clone());
        }
    }
    rng.shuffle(&mut requests);
    Ok(Mix {
        plan: Arc::new(Plan::once(requests)),
        pool_meetings: pool,
        per_op,
    })
}

/// Creates `count` meetings and returns their ids.
pub async fn create_meetings(
    addr: SocketAddr,
    signer: &Signer,
    prefix: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    let requests = (0..count)
        .map(|i| create_meeting(signer, &format!("{prefix}-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    send_all(addr, SETUP_CONNECTIONS, requests)
        .await?
        .iter()
        .map(|body| {
            string_at(body, &["Meeting", "MeetingId"]).ok_or_else(|| {
                format!("CreateMeeting answered without a MeetingId: {}", text(body))
            })
        })
        .collect()
}

/// Fills each meeting with `per_meeting` attendees using BatchCreateAttendee (100 per call).
pub async fn fill_meetings(
    addr: SocketAddr,
    signer: &Signer,
    meetings: &[String],
    per_meeting: usize,
) -> Result<usize, String> {
    let mut requests = Vec::new();
    for (m, meeting) in meetings.iter().enumerate() {
        for start in (0..per_meeting).step_by(100) {
            let users = (start..(start + 100).min(per_meeting)).map(|a| format!("fill-{m}-{a}"));
            requests.push(batch_create_attendees(signer, meeting, users)?);
        }
    }
    let mut created = 0;
    for body in send_all(addr, SETUP_CONNECTIONS, requests).await? {
        created += batch_attendee_ids(&body)?.len();
    }
    Ok(created)
}

fn create_meeting(signer: &Signer, external_id: &str) -> Result<Prepared, String> {
    // The SDKs always send a ClientRequestToken (idempotency token); so does the mix.
    let body = json!({
        "ClientRequestToken": uuid::Uuid::new_v4().simple().to_string(),
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": external_id,
    });
    signer.sign(
        Op::CreateMeeting,
        Method::POST,
        "/meetings",
        body.to_string(),
    )
}

fn create_attendee(signer: &Signer, meeting: &str, user: &str) -> Result<Prepared, String> {
    let body = json!({ "ExternalUserId": user });
    signer.sign(
        Op::CreateAttendee,
        Method::POST,
        &format!("/meetings/{meeting}/attendees"),
        body.to_string(),
    )
}

fn batch_create_attendees(
    signer: &Signer,
    meeting: &str,
    users: impl Iterator<Item = String>,
) -> Result<Prepared, String> {
    let attendees: Vec<Value> = users.map(|u| json!({ "ExternalUserId": u })).collect();
    let body = json!({ "Attendees": attendees });
    signer.sign(
        Op::BatchCreateAttendee,
        Method::POST,
        &format!("/meetings/{meeting}/attendees?operation=batch-create"),
        body.to_string(),
    )
}

/// The attendee ids of a BatchCreateAttendee answer; any per-attendee error is an error.
fn batch_attendee_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "BatchCreateAttendee answer is not JSON ({e}): {}",
            text(body)
        )
    })?;
    if value["Errors"].as_array().is_some_and(|e| !e.is_empty()) {
        return Err(format!(
            "BatchCreateAttendee reported errors: {}",
            text(body)
        ));
    }
    value["Attendees"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|a| a["AttendeeId"].as_str().map(str::to_owned))
                .collect()
        })
        .ok_or_else(|| {
            format!(
                "BatchCreateAttendee answer without Attendees: {}",
                text(body)
            )
        })
}

fn string_at(body: &[u8], path: &[&str]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    path.iter()
        .try_fold(&value, |v, key| v.get(key))?
        .as_str()
        .map(str::to_owned)
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Signs `count` items on every core (set-up only: the server is idle meanwhile).
fn sign_parallel<T: Send>(
    count: usize,
    sign_one: impl Fn(usize) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let sign_one = &sign_one;
                scope.spawn(move || {
                    (start..(start + chunk).min(count))
                        .map(sign_one)
                        .collect::<Result<Vec<T>, String>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(count);
        for handle in handles {
            out.extend(handle.join().map_err(|_| "a signing thread panicked")??);
        }
        Ok(out)
    })
}

/// A small deterministic generator (xorshift64*): the mix is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}
