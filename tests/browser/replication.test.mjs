// End to end: media replication (chime-meetings-api.md §3.11, chime-js-client-protocol.md §7(e)).
// A primary meeting with A and B, a replica of it (CreateMeeting with PrimaryMeetingId) with R1
// and R2; each attendee is the unmodified amazon-chime-sdk-js in its own headless Chromium
// process with its own fake-microphone tone. The cases run in order on the same meetings; the
// last but one ends them, and the last checks the events a webhook got meanwhile (a replica
// meeting reports its own).
//
//   primary:  A = alice 440 Hz    B = bob 660 Hz
//   replica:  R1 = rita 1030 Hz   R2 = rob 1180 Hz
//
// The tones. The received mix carries weak intermodulation products of the tones in it (Opus and
// the mixer; media.test.mjs sees them ~45 dB below the loudest tone), and a tone that must be
// absent is judged by its level relative to the loudest one, so an absent tone must not sit on a
// product of the mix. 880 and 1100 Hz (the obvious 2:3:4:5 series) sit exactly on products of
// 440 + 660 (2·660−440 = 880, 440+660 = 1100, and 2·440 = 880), and 1300 Hz is within 20 Hz of
// 2·660 = 3·440 = 1320. 1030 and 1180 Hz are at least 70 Hz (12 FFT bins of 5.9 Hz; the
// analysis looks ±2 bins) away from every product up to third order of every mix in this
// scenario: {440}, {660}, {440, 660} before the promotion and {660, 1030}, {440, 1030},
// {440, 660, 1030} after it.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import {
  assertEventEnvelope,
  assertHearing,
  cleanup,
  createAttendee,
  createMeeting,
  createReplicaMeeting,
  makeTempDir,
  meetings,
  Participant,
  serveStatic,
  sleep,
  startCarillon,
  startWebhookReceiver,
  summarize,
} from './lib.mjs';

const TONES = { A: 440, B: 660, R1: 1030, R2: 1180 };
const FREQUENCIES = Object.values(TONES);
const WHO = Object.fromEntries(Object.entries(TONES).map(([label, f]) => [f, label]));
const JOIN_TIMEOUT_MS = 15_000; // the SDK's own connection timeout; a join takes well under 5 s
const SIGNAL_MS = 5_000; // roster, data, promotion acks: a few signaling round trips
const MEDIA_MS = 20_000; // first decoded video frames, through ICE/DTLS and keyframes
const SETTLE_MS = 1_500; // how long something that must NOT happen is given to happen anyway

const PROMOTED_EXTERNAL_USER_ID = 'r1-promoted';
const WEBHOOK_SECRET = 'browser-replication-webhook-secret';

describe('media replication: a primary (A, B) and its replica (R1, R2)', () => {
  let server;
  let site;
  let hook;
  let dir;
  let primary; // { Meeting }
  let replica; // { Meeting }
  let unrelated; // { Meeting }, a third meeting for the refused promotion
  let A;
  let B;
  let R1;
  let R2;
  let promotedR1 = null; // { Attendee } on the primary, R1's credentials for the promotion
  let joined = false;
  let promoted = false;
  const requireJoined = () => assert.ok(joined, 'the four attendees did not all join (see the first case)');
  const requirePromoted = () =>
    assert.ok(promoted, 'R1 was not promoted into the primary (see the case "CreateAttendee on the primary …")');

  before(async () => {
    dir = await makeTempDir();
    hook = await startWebhookReceiver({ secret: WEBHOOK_SECRET });
    [server, site] = await Promise.all([
      startCarillon({ name: 'replication-server', args: ['--webhook', hook.url], env: { CARILLON_WEBHOOK_SECRET: WEBHOOK_SECRET } }),
      serveStatic(),
    ]);
    primary = await createMeeting(server.api, 'browser-replication-primary');
    replica = await createReplicaMeeting(server.api, primary.Meeting.MeetingId, 'browser-replication-replica');
    unrelated = await createMeeting(server.api, 'browser-replication-unrelated');
    const common = { site, api: server.api, dir, logPrefix: 'replication' };
    const onPrimary = { ...common, meetingId: primary.Meeting.MeetingId };
    const onReplica = { ...common, meetingId: replica.Meeting.MeetingId };
    [A, B, R1, R2] = await Promise.all([
      Participant.open({ ...onPrimary, label: 'A', externalUserId: 'alice', tone: TONES.A }),
      Participant.open({ ...onPrimary, label: 'B', externalUserId: 'bob', tone: TONES.B }),
      Participant.open({ ...onReplica, label: 'R1', externalUserId: 'rita', tone: TONES.R1 }),
      Participant.open({ ...onReplica, label: 'R2', externalUserId: 'rob', tone: TONES.R2 }),
    ]);
  }, { timeout: 120_000 });

  after(async () => {
    await cleanup(); // the browsers, the static server, the webhook receiver and carillon
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 60_000 });

  // --- helpers -------------------------------------------------------------------------------

  const primaryMeetingId = () => primary.Meeting.MeetingId;

  /** `p`'s roster entry for `attendeeId`, rendered for messages. */
  const rosterEntry = (state, attendeeId) => JSON.stringify(state.roster[attendeeId] ?? null);

  /** The roster ids `p` has ever seen, with labels where known, for messages. */
  const rosterSummary = (state) =>
    Object.entries(state.roster)
      .map(([id, e]) => `${labelOf(id)}=${e.externalUserId}${e.present ? '' : '(gone)'}`)
      .join(', ') || '(empty)';

  const labelOf = (attendeeId) => {
    for (const p of [A, B, R1, R2]) if (p?.attendeeId === attendeeId) return p.label;
    if (promotedR1 && attendeeId === promotedR1.Attendee.AttendeeId) return 'R1-promoted';
    return attendeeId;
  };

  /** The remote tiles of a state, rendered for messages. */
  const tilesSummary = (state) =>
    state.remoteTiles
      .map((t) => `${t.isContent ? 'content ' : ''}${labelOf(t.boundAttendeeId)}(${t.boundExternalUserId}) ${t.videoWidth ?? '?'}px frames=${t.framesDecoded ?? t.totalVideoFrames ?? '?'}`)
      .join(', ') || '(none)';

  /**
   * `p.waitFor` whose timeout message says what was observed instead, through `explain(state)`
   * (e.g. the roster or the tiles), and the status/promotion history of the session.
   */
  async function expect(p, predicate, { what, timeoutMs = SIGNAL_MS, explain }) {
    try {
      return await p.waitFor(predicate, { what, timeoutMs });
    } catch (e) {
      const state = await p.state().catch(() => null);
      if (!state) throw e;
      const history = [
        `stopped=${JSON.stringify(state.stopped)}`,
        `reconnects=${reconnects(state).length}`,
        state.promotions.length ? `promotions=${state.promotions.map((x) => x.name).join(',')}` : '',
        state.demotions.length ? `demotions=${state.demotions.map((x) => x.name).join(',')}` : '',
      ].filter(Boolean);
      throw new Error(
        `${p.label} (${p.externalUserId}): timed out after ${timeoutMs} ms waiting for ${what}; observed: ${explain(state)} [${history.join(' ')}] (console: ${p.handle.logPath})`,
      );
    }
  }

  /** Runs one check per participant and fails with all of their failures, not just the first. */
  async function each(participants, check) {
    const outcomes = await Promise.allSettled(participants.map((p) => check(p)));
    const failures = outcomes.filter((o) => o.status === 'rejected').map((o) => String(o.reason?.message ?? o.reason));
    if (failures.length > 0) assert.fail(failures.join('\n'));
    return outcomes.map((o) => o.value);
  }

  /** Reconnections (audioVideoDidStartConnecting(true)) since the join. */
  const reconnects = (state) => state.events.filter((e) => e.type === 'audioVideoDidStartConnecting' && e.reconnecting);

  /** The received mix of `p` (see `assertHearing`), with this scenario's tones. */
  const listen = (t, p, { hears, silent, what }) =>
    assertHearing(t, p, { frequencies: FREQUENCIES, who: WHO, hears, silent, what, mediaMs: MEDIA_MS });

  /** Fails if `attendeeId` ever appeared in `p`'s roster (checked after SETTLE_MS). */
  function assertNeverInRoster(p, state, attendeeId, why) {
    assert.ok(
      !(attendeeId in state.roster),
      `${p.label}'s roster must not show ${labelOf(attendeeId)} (${why}) but has ${rosterEntry(state, attendeeId)}; roster: ${rosterSummary(state)}`,
    );
  }

  // --- cases -----------------------------------------------------------------------------------

  const primaries = () => [A, B];
  const replicas = () => [R1, R2];
  const sees = (s, q) => s.roster[q.attendeeId]?.present === true && s.roster[q.attendeeId].externalUserId === q.externalUserId;
  const playing = (tile, attendeeId, externalUserId) =>
    !tile.isContent &&
    tile.boundAttendeeId === attendeeId &&
    tile.boundExternalUserId === externalUserId &&
    tile.videoWidth > 0 &&
    (tile.framesDecoded > 0 || tile.totalVideoFrames > 0);

  test('GetMeeting: the replica carries PrimaryMeetingId, the primary does not', { timeout: 15_000 }, async () => {
    const get = (id) => server.api.send(new meetings.GetMeetingCommand({ MeetingId: id }));
    const [p, r] = await Promise.all([get(primary.Meeting.MeetingId), get(replica.Meeting.MeetingId)]);
    assert.equal(replica.Meeting.PrimaryMeetingId, primary.Meeting.MeetingId, `CreateMeeting(replica) answered ${JSON.stringify(replica.Meeting)}`);
    assert.equal(r.Meeting.PrimaryMeetingId, primary.Meeting.MeetingId, `GetMeeting(replica) answered ${JSON.stringify(r.Meeting)}`);
    assert.equal(p.Meeting.PrimaryMeetingId ?? null, null, `GetMeeting(primary) answered ${JSON.stringify(p.Meeting)}`);
  });

  test('all four reach audioVideoDidStart', { timeout: 60_000 }, async (t) => {
    const everyone = [A, B, R1, R2];
    const meetingOf = (p) => (p === A || p === B ? primary : replica);
    const results = await Promise.allSettled(everyone.map((p) => p.join(meetingOf(p), { timeoutMs: JOIN_TIMEOUT_MS })));
    const failures = results
      .map((r, i) => (r.status === 'rejected' ? `${everyone[i].label}: ${String(r.reason?.message ?? r.reason).split('\n')[0]}` : null))
      .filter(Boolean);
    assert.deepEqual(failures, [], `join failed:\n  ${failures.join('\n  ')}`);
    results.forEach((r, i) => assert.equal(r.value.attendeeId, everyone[i].attendeeId));
    t.diagnostic(`join() to audioVideoDidStart: ${results.map((r, i) => `${everyone[i].label} ${r.value.startMs} ms`).join(', ')}`);
    joined = true;
  });

  test("the replica attendees see the primary's roster; nobody sees a replica attendee", { timeout: 30_000 }, async () => {
    requireJoined();
    // Both halves are checked and reported even when the first fails.
    const present = await each([R1, R2, A, B], (p) =>
      expect(p, (s) => primaries().every((q) => sees(s, q)), {
        what: 'A (alice) and B (bob) present in the roster',
        explain: (s) => `roster ${rosterSummary(s)}`,
      }),
    ).then(
      () => null,
      (e) => e,
    );
    await sleep(SETTLE_MS);
    const absent = await each([R1, R2, A, B], async (p) => {
      const state = await p.state();
      for (const q of replicas()) {
        const why = q === p ? 'a replica attendee is not in the roster it receives' : p === R1 || p === R2 ? 'replica attendees do not see each other' : 'nobody sees replica attendees';
        assertNeverInRoster(p, state, q.attendeeId, why);
      }
    }).then(
      () => null,
      (e) => e,
    );
    const failures = [present, absent].filter(Boolean).map((e) => e.message);
    if (failures.length > 0) assert.fail(failures.join('\n'));
  });

  test('R1 and R2 hear A and B, not each other nor themselves; A and B do not hear R1 or R2', { timeout: 90_000 }, async (t) => {
    requireJoined();
    const silent = [TONES.R1, TONES.R2];
    await each([R1, R2, A, B], (p) =>
      p === R1 || p === R2
        ? listen(t, p, { hears: [TONES.A, TONES.B], silent, what: 'as a replica attendee' })
        : listen(t, p, { hears: [p === A ? TONES.B : TONES.A], silent: [p.tone, ...silent], what: 'in the primary' }),
    );
  });

  test('a replica attendee cannot start local video: canStartLocalVideo is false', { timeout: 30_000 }, async () => {
    requireJoined();
    // The SDK starts from canStartLocalVideo=false and calls videoAvailabilityDidChange only on a
    // change, so a replica attendee (INDEX at_capacity=true, no sources yet) gets no callback at
    // all: what is checked here is that none ever said true. The next case, where A's and B's
    // cameras make remote video available, sees the explicit {canStartLocalVideo: false}.
    // A primary attendee does get canStartLocalVideo=true (at_capacity=false), the control.
    await expect(A, (s) => s.canStartLocalVideo === true, {
      what: 'videoAvailabilityDidChange(canStartLocalVideo=true) on a primary attendee',
      explain: (s) => `videoAvailability ${JSON.stringify(s.videoAvailability)}`,
    });
    await each([R1, R2], async (p) => {
      const state = await p.state();
      const changes = state.events.filter((e) => e.type === 'videoAvailabilityDidChange');
      assert.ok(
        state.canStartLocalVideo !== true && changes.every((e) => e.canStartLocalVideo === false),
        `${p.label}: a replica attendee must never get canStartLocalVideo=true (INDEX at_capacity=true); videoAvailabilityDidChange calls: ${JSON.stringify(changes)}`,
      );
    });
  });

  test("A's and B's cameras reach R1 and R2", { timeout: 90_000 }, async () => {
    requireJoined();
    await Promise.all(primaries().map((p) => p.call('startVideo')));
    try {
      await each([R1, R2], async (p) => {
        await expect(p, (s) => primaries().every((q) => s.remoteTiles.some((tile) => playing(tile, q.attendeeId, q.externalUserId))), {
          what: 'playing camera tiles bound to A (alice) and B (bob)',
          timeoutMs: MEDIA_MS,
          explain: (s) => `tiles ${tilesSummary(s)}; remoteVideoSources ${JSON.stringify(s.remoteVideoSources.map((v) => labelOf(v.attendeeId)))}`,
        });
        const state = await p.state();
        const sources = state.remoteVideoSources.map((v) => labelOf(v.attendeeId)).sort();
        assert.deepEqual(sources, ['A', 'B'], `${p.label}'s remoteVideoSources should be A and B`);
        assert.deepEqual(
          state.videoAvailability,
          { canStartLocalVideo: false, remoteVideoAvailable: true },
          `${p.label}: with remote video available a replica attendee must still get canStartLocalVideo=false`,
        );
      });
    } finally {
      await Promise.all(primaries().map((p) => p.call('stopVideo')));
    }
    await each([R1, R2], (p) =>
      expect(p, (s) => s.remoteTiles.every((tile) => tile.isContent), {
        what: 'the camera tiles to go away after A and B stopped their cameras',
        timeoutMs: SIGNAL_MS * 2,
        explain: (s) => `tiles ${tilesSummary(s)}`,
      }),
    );
  });

  test("A's data messages reach R1 and R2; R1's reach nobody", { timeout: 30_000 }, async () => {
    requireJoined();
    const fromA = `hello from alice ${Date.now()}`;
    await A.call('sendData', fromA);
    await each([B, R1, R2], async (p) => {
      const state = await expect(p, (s) => s.dataMessages.some((m) => m.text === fromA), {
        what: "A's data message",
        explain: (s) => `${s.dataMessages.length} data messages: ${JSON.stringify(s.dataMessages.map((m) => m.text))}`,
      });
      const message = state.dataMessages.find((m) => m.text === fromA);
      assert.equal(message.senderAttendeeId, A.attendeeId, `${p.label}: sender of A's message: ${JSON.stringify(message)}`);
      assert.equal(message.senderExternalUserId, A.externalUserId, `${p.label}: sender of A's message: ${JSON.stringify(message)}`);
    });
    const fromR1 = `hello from rita the replica ${Date.now()}`;
    await R1.call('sendData', fromR1);
    await sleep(SETTLE_MS);
    const leaked = [];
    for (const p of [A, B, R2]) {
      if ((await p.state()).dataMessages.some((m) => m.text === fromR1)) leaked.push(p.label);
    }
    assert.deepEqual(leaked, [], "a data message from replica attendee R1 must reach nobody; it reached these");
  });

  test('CreateAttendee on the primary for R1, promote() with it: status OK', { timeout: 30_000 }, async (t) => {
    requireJoined();
    promotedR1 = await createAttendee(server.api, primaryMeetingId(), PROMOTED_EXTERNAL_USER_ID);
    const status = await R1.promote(promotedR1);
    const state = await R1.state();
    t.diagnostic(`promote: ${JSON.stringify(state.promotions.at(-1))}`);
    assert.equal(
      status,
      'OK',
      `R1's promoteToPrimaryMeeting(primary attendee ${promotedR1.Attendee.AttendeeId}) resolved to ${status} ` +
        `(SignalingRequestFailed = no PRIMARY_MEETING_JOIN_ACK within the SDK timeout); promotions: ${JSON.stringify(state.promotions)}`,
    );
    assert.equal(state.stopped, null, `R1's session stopped: ${JSON.stringify(state.stopped)}`);
    promoted = true;
  });

  test("after the promotion A, B and R2 see R1's promoted attendee in their rosters (and never R1's replica id)", { timeout: 30_000 }, async () => {
    requirePromoted();
    const id = promotedR1.Attendee.AttendeeId;
    await each([A, B, R2], async (p) => {
      const state = await expect(p, (s) => s.roster[id]?.present && s.roster[id].externalUserId === PROMOTED_EXTERNAL_USER_ID, {
        what: `R1's promoted attendee ${id} (${PROMOTED_EXTERNAL_USER_ID}) present in the roster`,
        explain: (s) => `roster ${rosterSummary(s)}`,
      });
      assertNeverInRoster(p, state, R1.attendeeId, 'the promoted user appears under the primary attendee id only');
    });
  });

  test("after the promotion A, B and R2 hear R1's tone; R1 still does not hear itself", { timeout: 90_000 }, async (t) => {
    requirePromoted();
    const what = 'after R1 was promoted';
    await each([A, B, R2, R1], (p) => {
      if (p === A) return listen(t, A, { hears: [TONES.B, TONES.R1], silent: [TONES.A, TONES.R2], what });
      if (p === B) return listen(t, B, { hears: [TONES.A, TONES.R1], silent: [TONES.B, TONES.R2], what });
      if (p === R2) return listen(t, R2, { hears: [TONES.A, TONES.B, TONES.R1], silent: [TONES.R2], what });
      return listen(t, R1, { hears: [TONES.A, TONES.B], silent: [TONES.R1, TONES.R2], what: 'promoted' });
    });
  });

  test('after the promotion R1 can start its camera and A and R2 see it under the promoted attendee id', { timeout: 90_000 }, async () => {
    requirePromoted();
    const id = promotedR1.Attendee.AttendeeId;
    // canStartLocalVideo is checked after the video, so that a missing INDEX update does not
    // hide whether the video itself flows.
    const availability = expect(R1, (s) => s.canStartLocalVideo === true, {
      what: 'videoAvailabilityDidChange(canStartLocalVideo=true) after the promotion (an INDEX with at_capacity=false)',
      explain: (s) => `videoAvailability ${JSON.stringify(s.videoAvailability)}`,
    }).then(
      () => null,
      (e) => e,
    );
    await R1.call('startVideo');
    try {
      await each([A, R2], async (p) => {
        await expect(p, (s) => s.remoteTiles.some((tile) => playing(tile, id, PROMOTED_EXTERNAL_USER_ID)), {
          what: `a playing camera tile bound to R1's promoted attendee ${id} (${PROMOTED_EXTERNAL_USER_ID})`,
          timeoutMs: MEDIA_MS,
          explain: (s) => `tiles ${tilesSummary(s)}; remoteVideoSources ${JSON.stringify(s.remoteVideoSources.map((v) => labelOf(v.attendeeId)))}`,
        });
        const state = await p.state();
        assert.ok(
          !state.remoteVideoSources.some((v) => v.attendeeId === R1.attendeeId),
          `${p.label} must not see a video source under R1's replica id: ${JSON.stringify(state.remoteVideoSources)}`,
        );
      });
    } finally {
      await R1.call('stopVideo');
    }
    const unavailable = await availability;
    if (unavailable) throw unavailable;
    await expect(A, (s) => !s.remoteTiles.some((tile) => tile.boundAttendeeId === id), {
      what: "R1's camera tile to go away after R1 stopped its camera",
      timeoutMs: SIGNAL_MS * 2,
      explain: (s) => `tiles ${tilesSummary(s)}`,
    });
  });

  test("after the promotion R1's data messages reach A, B and R2 under the promoted attendee's ids", { timeout: 30_000 }, async () => {
    requirePromoted();
    const text = `hello from promoted rita ${Date.now()}`;
    await R1.call('sendData', text);
    await each([A, B, R2], async (p) => {
      const state = await expect(p, (s) => s.dataMessages.some((m) => m.text === text), {
        what: "promoted R1's data message",
        explain: (s) => `${s.dataMessages.length} data messages: ${JSON.stringify(s.dataMessages.map((m) => m.text))}`,
      });
      const message = state.dataMessages.find((m) => m.text === text);
      assert.equal(message.senderAttendeeId, promotedR1.Attendee.AttendeeId, `${p.label}: ${JSON.stringify(message)}`);
      assert.equal(message.senderExternalUserId, PROMOTED_EXTERNAL_USER_ID, `${p.label}: ${JSON.stringify(message)}`);
    });
  });

  test("demote(): R1's promoted attendee leaves A's roster and A stops hearing R1", { timeout: 60_000 }, async (t) => {
    requirePromoted();
    const id = promotedR1.Attendee.AttendeeId;
    const before = (await R1.state()).demotions.length;
    await R1.demote();
    promoted = false;
    const r1 = await expect(R1, (s) => s.demotions.length > before, {
      what: 'audioVideoWasDemotedFromPrimaryMeeting (the SDK reports demote() locally)',
      explain: (s) => `demotions ${JSON.stringify(s.demotions)}`,
    });
    assert.equal(r1.demotions.at(-1).name, 'OK', `R1's demotion status: ${JSON.stringify(r1.demotions)}`);
    await each([A, B, R2], (p) =>
      expect(p, (s) => s.roster[id]?.present === false, {
        what: `R1's promoted attendee ${id} to leave the roster after demote()`,
        explain: (s) => `roster ${rosterSummary(s)}`,
      }),
    );
    await listen(t, A, { hears: [TONES.B], silent: [TONES.A, TONES.R1, TONES.R2], what: 'after R1 was demoted' });
    const text = `hello from demoted rita ${Date.now()}`;
    await R1.call('sendData', text);
    await sleep(SETTLE_MS);
    const leaked = [];
    for (const p of [A, B, R2]) {
      if ((await p.state()).dataMessages.some((m) => m.text === text)) leaked.push(p.label);
    }
    assert.deepEqual(leaked, [], 'a data message from R1 after its demotion must reach nobody; it reached these');
    const state = await R1.state();
    assert.equal(state.stopped, null, `R1's session must go on after demote(): ${JSON.stringify(state.stopped)}`);
  });

  test('promote again, then DeleteAttendee of the primary attendee demotes R1 and its session goes on', { timeout: 90_000 }, async (t) => {
    requireJoined();
    assert.ok(promotedR1, 'no primary attendee was created for R1 (see the first promotion case)');
    const id = promotedR1.Attendee.AttendeeId;
    const status = await R1.promote(promotedR1);
    assert.equal(
      status,
      'OK',
      `R1's promotion (again) with the credentials of primary attendee ${id} resolved to ${status}: ${JSON.stringify((await R1.state()).promotions)}`,
    );
    await each([A, R2], (p) =>
      expect(p, (s) => s.roster[id]?.present === true, {
        what: `R1's promoted attendee ${id} back in the roster after the second promotion`,
        explain: (s) => `roster ${rosterSummary(s)}`,
      }),
    );
    const beforeDemotions = (await R1.state()).demotions.length;
    const beforeReconnects = reconnects(await R1.state()).length;
    await server.api.send(new meetings.DeleteAttendeeCommand({ MeetingId: primaryMeetingId(), AttendeeId: id }));
    // A server PRIMARY_MEETING_LEAVE (no error status) is what the SDK reports as
    // audioVideoWasDemotedFromPrimaryMeeting(AudioVideoWasRemovedFromPrimaryMeeting); an error
    // status on that frame, or any other terminal frame, would stop or reconnect the session.
    const r1 = await expect(R1, (s) => s.demotions.length > beforeDemotions || s.stopped, {
      what: 'audioVideoWasDemotedFromPrimaryMeeting after DeleteAttendee of the primary attendee',
      explain: (s) => `demotions ${JSON.stringify(s.demotions)}`,
    });
    assert.equal(r1.stopped, null, `R1's session stopped instead of being demoted: ${JSON.stringify(r1.stopped)}`);
    assert.equal(
      r1.demotions.at(-1).name,
      'AudioVideoWasRemovedFromPrimaryMeeting',
      `R1's demotion status after DeleteAttendee: ${JSON.stringify(r1.demotions.slice(beforeDemotions))}`,
    );
    await each([A, B, R2], (p) =>
      expect(p, (s) => s.roster[id]?.present === false, {
        what: `R1's promoted attendee ${id} to leave the roster after DeleteAttendee`,
        explain: (s) => `roster ${rosterSummary(s)}`,
      }),
    );
    await sleep(SETTLE_MS);
    const after = await R1.state();
    assert.equal(after.stopped, null, `R1's session must go on after the demotion: ${JSON.stringify(after.stopped)}`);
    assert.equal(reconnects(after).length, beforeReconnects, `R1 must not reconnect after the demotion: ${summarize(reconnects(after))}`);
    await each([R1, A], (p) =>
      p === R1
        ? listen(t, R1, { hears: [TONES.A, TONES.B], silent: [TONES.R1, TONES.R2], what: 'after DeleteAttendee demoted it' })
        : listen(t, A, { hears: [TONES.B], silent: [TONES.A, TONES.R1, TONES.R2], what: 'after DeleteAttendee demoted R1' }),
    );
  });

  test("promotion with credentials that are not a primary attendee's is refused", { timeout: 90_000 }, async (t) => {
    requireJoined();
    const foreign = await createAttendee(server.api, unrelated.Meeting.MeetingId, 'someone-elsewhere');
    const fresh = await createAttendee(server.api, primaryMeetingId(), 'r1-bad-token');
    const token = fresh.Attendee.JoinToken;
    const tampered = { Attendee: { ...fresh.Attendee, JoinToken: `${token.slice(0, -4)}${token.endsWith('AAAA') ? 'BBBB' : 'AAAA'}` } };
    const attempts = [
      ['an attendee of an unrelated meeting', foreign],
      ["R2's replica attendee", R2.attendee],
      ['a primary attendee with a wrong JoinToken', tampered],
    ];
    const outcomes = [];
    for (const [what, credentials] of attempts) {
      outcomes.push([what, credentials.Attendee.AttendeeId, await R1.promote(credentials)]);
    }
    t.diagnostic(`refusals: ${outcomes.map(([what, , status]) => `${what}: ${status}`).join('; ')}`);
    const wrong = outcomes.filter(([, , status]) => status !== 'AudioAuthenticationRejected');
    assert.deepEqual(
      wrong.map(([what, , status]) => `${what} -> ${status}`),
      [],
      'each promotion must resolve to AudioAuthenticationRejected (PRIMARY_MEETING_JOIN_ACK with error status 403; ' +
        'SignalingRequestFailed = no ack within the SDK timeout)',
    );
    await sleep(SETTLE_MS);
    const state = await R1.state();
    assert.equal(state.stopped, null, `R1's session must go on after refused promotions: ${JSON.stringify(state.stopped)}`);
    await each([A, B], async (p) => {
      const s = await p.state();
      for (const [what, attendeeId] of outcomes) assertNeverInRoster(p, s, attendeeId, `refused promotion with ${what}`);
    });
  });

  test('promotion from a session of the primary itself is refused', { timeout: 30_000 }, async () => {
    requireJoined();
    const extra = await createAttendee(server.api, primaryMeetingId(), 'bob-second-seat');
    const status = await B.promote(extra);
    assert.equal(status, 'AudioAuthenticationRejected', `B (a primary attendee) promote() resolved to ${status}`);
    const state = await B.state();
    assert.equal(state.stopped, null, `B's session must go on: ${JSON.stringify(state.stopped)}`);
  });

  test('DeleteMeeting of the primary stops all four with MeetingEnded and deletes the replica', { timeout: 30_000 }, async () => {
    requireJoined();
    await server.api.send(new meetings.DeleteMeetingCommand({ MeetingId: primaryMeetingId() }));
    await each([A, B, R1, R2], async (p) => {
      const state = await expect(p, (s) => s.stopped, {
        what: 'audioVideoDidStop after DeleteMeeting(primary)',
        explain: () => 'still running',
      });
      assert.equal(state.stopped.name, 'MeetingEnded', `${p.label} stopped with ${state.stopped.name}`);
    });
    const error = await server.api.send(new meetings.GetMeetingCommand({ MeetingId: replica.Meeting.MeetingId })).then(
      (out) => new Error(`GetMeeting(replica) still answers after DeleteMeeting(primary): ${JSON.stringify(out.Meeting)}`),
      (e) => e,
    );
    assert.equal(error.name, 'NotFoundException', `GetMeeting(replica) after DeleteMeeting(primary): ${error.name}: ${error.message}`);
  });

  test('the replica meeting reported its own events: started, joined, left, ended', { timeout: 30_000 }, async () => {
    requireJoined();
    const replicaId = replica.Meeting.MeetingId;
    const ended = (events, id) => events.some((e) => e.detail?.eventType === 'chime:MeetingEnded' && e.detail.meetingId === id);
    await hook.waitFor((events) => ended(events, replicaId) && ended(events, primaryMeetingId()), {
      what: 'MeetingEnded of the primary and of the replica',
    });
    await sleep(SETTLE_MS);
    const events = hook.events();
    const bad = hook.deliveries.filter((d) => !d.signatureOk).map((d) => d.body.toString());
    assert.deepEqual(bad, [], 'every delivery is signed');
    const external = new Map([
      [primaryMeetingId(), primary.Meeting.ExternalMeetingId],
      [replicaId, replica.Meeting.ExternalMeetingId],
      [unrelated.Meeting.MeetingId, unrelated.Meeting.ExternalMeetingId],
    ]);
    for (const e of events) {
      assert.ok(external.has(e.detail?.meetingId), `an event of an unknown meeting: ${JSON.stringify(e)}`);
      assertEventEnvelope(e, { meetingId: e.detail.meetingId, externalMeetingId: external.get(e.detail.meetingId) });
    }
    // The replica's events name the replica (its own MeetingId and ExternalMeetingId) and its
    // own attendees, R1 and R2, who joined it and were still connected when it ended.
    const ofReplica = events.filter((e) => e.detail.meetingId === replicaId);
    const key = (e) => [e.detail.eventType, e.detail.externalUserId].filter(Boolean).join(' ');
    const want = [
      'chime:MeetingStarted',
      ...replicas().flatMap((p) =>
        ['AttendeeAdded', 'AttendeeAuthorized', 'AttendeeJoined', 'AttendeeLeft'].map((t) => `chime:${t} ${p.externalUserId}`),
      ),
      'chime:MeetingEnded',
    ].sort();
    assert.deepEqual(ofReplica.map(key).sort(), want, "the replica meeting's events, deduplicated by id");
    for (const p of replicas()) {
      const mine = ofReplica.filter((e) => e.detail.externalUserId === p.externalUserId);
      assert.ok(mine.every((e) => e.detail.attendeeId === p.attendeeId), `${p.label}'s events carry its replica AttendeeId`);
    }
    const stamps = ofReplica.map((e) => e.detail.timestamp);
    const at = (t) => ofReplica.find((e) => e.detail.eventType === t).detail.timestamp;
    assert.equal(at('chime:MeetingStarted'), Math.min(...stamps), "the replica's MeetingStarted comes first");
    assert.equal(at('chime:MeetingEnded'), Math.max(...stamps), "the replica's MeetingEnded comes last");
    const primaryStarted = events.find((e) => e.detail.eventType === 'chime:MeetingStarted' && e.detail.meetingId === primaryMeetingId());
    assert.ok(primaryStarted.detail.timestamp <= at('chime:MeetingStarted'), 'the primary started before its replica');
    // The primary's own attendees joined the primary.
    for (const p of primaries()) {
      const joinedPrimary = events.filter(
        (e) => e.detail.eventType === 'chime:AttendeeJoined' && e.detail.meetingId === primaryMeetingId() && e.detail.attendeeId === p.attendeeId,
      );
      assert.equal(joinedPrimary.length, 1, `${p.label} joined the primary once`);
    }
  });
});
