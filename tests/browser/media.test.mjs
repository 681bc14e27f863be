// End to end: three attendees, each the unmodified amazon-chime-sdk-js in its own headless
// Chromium process with its own fake microphone tone, in one Carillon meeting. The cases run in
// order on the same meeting; each leaves it as it found it (the last two end it). A webhook
// receives the meeting's events all along; the last case checks what the whole session produced.
//
//   A = alice, 440 Hz     B = bob, 660 Hz     C = carol, 880 Hz
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import {
  assertEventEnvelope,
  cleanup,
  createMeeting,
  HEARING,
  makeTempDir,
  meetings,
  Participant,
  serveStatic,
  sleep,
  startCarillon,
  startWebhookReceiver,
  webhookSignatureOk,
} from './lib.mjs';

const FREQUENCIES = [440, 660, 880];
const JOIN_TIMEOUT_MS = 15_000; // the SDK's own connection timeout; a join takes well under 5 s
const SIGNAL_MS = 5_000; // roster, mute, data, removal: a few signaling round trips
const MEDIA_MS = 20_000; // first decoded video frames, through ICE/DTLS and keyframes
const WEBHOOK_SECRET = 'browser-media-webhook-secret';
const EXTERNAL_MEETING_ID = 'browser-media-test';

describe('three attendees in one meeting', () => {
  let server;
  let site;
  let hook;
  let dir;
  let meeting;
  let A;
  let B;
  let C;
  let everyone = [];
  let joined = false;
  const others = (p) => everyone.filter((q) => q !== p);
  // The later cases need the meeting of the first: without it they fail at once, not by timeout.
  const requireJoined = () => assert.ok(joined, 'the three attendees did not join (see the first case)');

  before(async () => {
    dir = await makeTempDir();
    hook = await startWebhookReceiver({ secret: WEBHOOK_SECRET });
    [server, site] = await Promise.all([
      startCarillon({ name: 'media-server', args: ['--webhook', hook.url], env: { CARILLON_WEBHOOK_SECRET: WEBHOOK_SECRET } }),
      serveStatic(),
    ]);
    meeting = await createMeeting(server.api, EXTERNAL_MEETING_ID);
    const common = { site, api: server.api, meetingId: meeting.Meeting.MeetingId, dir, logPrefix: 'media' };
    [A, B, C] = await Promise.all([
      Participant.open({ ...common, label: 'A', externalUserId: 'alice', tone: 440 }),
      Participant.open({ ...common, label: 'B', externalUserId: 'bob', tone: 660 }),
      Participant.open({ ...common, label: 'C', externalUserId: 'carol', tone: 880 }),
    ]);
    everyone = [A, B, C];
  }, { timeout: 90_000 });

  after(async () => {
    await cleanup(); // the browsers, the static server, the webhook receiver and carillon
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 60_000 });

  test('all three join and each sees all three in its roster', { timeout: 60_000 }, async (t) => {
    const results = await Promise.all(everyone.map((p) => p.join(meeting, { timeoutMs: JOIN_TIMEOUT_MS })));
    results.forEach((result, i) => assert.equal(result.attendeeId, everyone[i].attendeeId));
    t.diagnostic(`join() to audioVideoDidStart: ${results.map((r, i) => `${everyone[i].label} ${r.startMs} ms`).join(', ')}`);

    for (const p of everyone) {
      const state = await p.waitFor(
        (s) => everyone.every((q) => s.roster[q.attendeeId]?.present && s.roster[q.attendeeId].externalUserId === q.externalUserId),
        { what: 'A, B and C present in the roster', timeoutMs: SIGNAL_MS },
      );
      assert.ok(state.started);
      assert.equal(state.stopped, null);
      assert.deepEqual(
        everyone.map((q) => [q.attendeeId, state.roster[q.attendeeId].externalUserId]),
        everyone.map((q) => [q.attendeeId, q.externalUserId]),
      );
    }
    joined = true;
  });

  test('mute on A is seen by B and C', { timeout: 30_000 }, async () => {
    requireJoined();
    await A.call('mute');
    for (const p of others(A)) {
      await p.waitFor((s) => s.roster[A.attendeeId]?.muted === true, { what: 'A muted', timeoutMs: SIGNAL_MS });
    }
    await A.call('unmute');
    for (const p of others(A)) {
      await p.waitFor((s) => s.roster[A.attendeeId]?.muted === false, { what: 'A unmuted', timeoutMs: SIGNAL_MS });
    }
  });

  test('each hears the other two tones and not its own', { timeout: 60_000 }, async (t) => {
    requireJoined();
    await Promise.all(
      everyone.map(async (p) => {
        await p.poll(
          () => p.call('rtcStats'),
          (stats) => stats.inboundAudio.some((a) => a.packetsReceived > 0 && a.totalAudioEnergy > 0),
          { what: 'inbound audio packets with energy', timeoutMs: MEDIA_MS },
        );
        const expected = others(p).map((q) => q.tone);
        const hearsRightMix = (spectrum) =>
          expected.every(
            (f) => spectrum.levels[f].aboveFloorDb >= HEARING.heardAboveFloorDb && spectrum.levels[f].belowMaxDb <= HEARING.heardBelowMaxDb,
          ) && spectrum.levels[p.tone].belowMaxDb >= HEARING.absentBelowMaxDb;
        // The mix may take a moment to settle after the join: measure up to three times.
        let spectrum;
        for (let attempt = 0; attempt < 3; attempt++) {
          spectrum = await p.call('audioSpectrum', FREQUENCIES, { durationMs: 1500 });
          if (hearsRightMix(spectrum)) break;
          await sleep(500);
        }
        const message = `${p.label} (${p.tone} Hz) received ${JSON.stringify(spectrum)}`;
        const levels = FREQUENCIES.map((f) => `${f} Hz ${spectrum.levels[f].aboveFloorDb}/${-spectrum.levels[f].belowMaxDb} dB`);
        t.diagnostic(`${p.label} hears (above floor / vs loudest): ${levels.join(', ')}`);
        for (const f of expected) {
          assert.ok(spectrum.levels[f].aboveFloorDb >= HEARING.heardAboveFloorDb, `${f} Hz should be heard clearly: ${message}`);
          assert.ok(spectrum.levels[f].belowMaxDb <= HEARING.heardBelowMaxDb, `${f} Hz should be about as loud as the loudest tone: ${message}`);
        }
        assert.ok(spectrum.levels[p.tone].belowMaxDb >= HEARING.absentBelowMaxDb, `its own ${p.tone} Hz must not come back: ${message}`);
      }),
    );
  });

  test("each attendee's camera reaches the other two", { timeout: 90_000 }, async () => {
    requireJoined();
    await Promise.all(everyone.map((p) => p.call('startVideo')));
    for (const p of everyone) {
      await p.waitFor(
        (s) =>
          others(p).every((q) =>
            s.remoteTiles.some(
              (t) =>
                !t.isContent &&
                t.boundAttendeeId === q.attendeeId &&
                t.boundExternalUserId === q.externalUserId &&
                t.videoWidth > 0 &&
                (t.framesDecoded > 0 || t.totalVideoFrames > 0),
            ),
          ),
        { what: 'playing camera tiles of the other two', timeoutMs: MEDIA_MS },
      );
      const sources = (await p.state()).remoteVideoSources.map((s) => s.attendeeId).sort();
      assert.deepEqual(sources, others(p).map((q) => q.attendeeId).sort());
    }

    await Promise.all(everyone.map((p) => p.call('stopVideo')));
    for (const p of everyone) {
      await p.waitFor((s) => s.remoteTiles.every((t) => t.isContent), {
        what: 'the camera tiles to go away after the cameras stopped',
        timeoutMs: SIGNAL_MS * 2,
      });
    }
  });

  test('a content share from A reaches B and C as a content tile', { timeout: 90_000 }, async () => {
    requireJoined();
    const contentId = `${A.attendeeId}#content`;
    await A.call('startContentShare');
    await A.waitFor((s) => s.contentShare.started, { what: 'contentShareDidStart', timeoutMs: SIGNAL_MS * 2 });
    for (const p of others(A)) {
      const state = await p.waitFor(
        (s) =>
          s.remoteTiles.some(
            (t) => t.isContent && t.boundAttendeeId === contentId && t.videoWidth > 0 && (t.framesDecoded > 0 || t.totalVideoFrames > 0),
          ),
        { what: `a playing content tile of ${contentId}`, timeoutMs: MEDIA_MS },
      );
      const tile = state.remoteTiles.find((t) => t.isContent);
      assert.equal(tile.boundAttendeeId, contentId);
    }

    await A.call('stopContentShare');
    await A.waitFor((s) => s.contentShare.stopped, { what: 'contentShareDidStop', timeoutMs: SIGNAL_MS * 2 });
    for (const p of others(A)) {
      await p.waitFor((s) => !s.remoteTiles.some((t) => t.isContent), {
        what: 'the content tile to go away',
        timeoutMs: SIGNAL_MS * 2,
      });
    }
  });

  test('a data message from B reaches A and C with B ids and is not echoed to B', { timeout: 30_000 }, async () => {
    requireJoined();
    const text = `hello from bob ${Date.now()}`;
    const sentAt = Date.now();
    await B.call('sendData', text);
    for (const p of others(B)) {
      const state = await p.waitFor((s) => s.dataMessages.some((m) => m.text === text), {
        what: 'the data message from B',
        timeoutMs: SIGNAL_MS,
      });
      const message = state.dataMessages.find((m) => m.text === text);
      assert.equal(message.topic, 'chat');
      assert.equal(message.senderAttendeeId, B.attendeeId);
      assert.equal(message.senderExternalUserId, B.externalUserId);
      assert.equal(message.throttled, false);
      assert.ok(Math.abs(message.timestampMs - sentAt) < 60_000, `timestampMs ${message.timestampMs} should be about now (${sentAt})`);
    }
    await sleep(1000);
    const echoed = (await B.state()).dataMessages.filter((m) => m.text === text);
    assert.deepEqual(echoed, [], 'B must not receive its own message');
  });

  test('DeleteAttendee stops C with AudioAttendeeRemoved', { timeout: 30_000 }, async () => {
    requireJoined();
    await server.api.send(new meetings.DeleteAttendeeCommand({ MeetingId: meeting.Meeting.MeetingId, AttendeeId: C.attendeeId }));
    const state = await C.waitFor((s) => s.stopped, { what: 'audioVideoDidStop', timeoutMs: SIGNAL_MS });
    assert.equal(state.stopped.name, 'AudioAttendeeRemoved');
    for (const p of [A, B]) {
      await p.waitFor((s) => s.roster[C.attendeeId]?.present === false, { what: 'C to leave the roster', timeoutMs: SIGNAL_MS });
    }
  });

  test('DeleteMeeting stops everyone with MeetingEnded', { timeout: 30_000 }, async () => {
    requireJoined();
    await server.api.send(new meetings.DeleteMeetingCommand({ MeetingId: meeting.Meeting.MeetingId }));
    for (const p of [A, B]) {
      const state = await p.waitFor((s) => s.stopped, { what: 'audioVideoDidStop', timeoutMs: SIGNAL_MS });
      assert.equal(state.stopped.name, 'MeetingEnded');
    }
  });

  test('the webhook got every event of the session exactly once (by id), signed, with the exact envelope', { timeout: 30_000 }, async () => {
    requireJoined();
    const meetingId = meeting.Meeting.MeetingId;
    const content = (p) => `${p.attendeeId}#content`;
    // What the cases above did, as events: [eventType, attendeeId, externalUserId].
    const expected = [
      ['chime:MeetingStarted'],
      ...everyone.map((p) => ['chime:AttendeeAdded', p.attendeeId, p.externalUserId]),
      ...everyone.map((p) => ['chime:AttendeeAuthorized', p.attendeeId, p.externalUserId]),
      ...everyone.map((p) => ['chime:AttendeeJoined', p.attendeeId, p.externalUserId]),
      ...everyone.map((p) => ['chime:AttendeeVideoStarted', p.attendeeId, p.externalUserId]),
      ...everyone.map((p) => ['chime:AttendeeVideoStopped', p.attendeeId, p.externalUserId]),
      ['chime:AttendeeAuthorized', content(A), `${A.externalUserId}#content`],
      ['chime:AttendeeContentJoined', content(A), `${A.externalUserId}#content`],
      ['chime:AttendeeContentVideoStarted', content(A), `${A.externalUserId}#content`],
      ['chime:AttendeeContentVideoStopped', content(A), `${A.externalUserId}#content`],
      ['chime:AttendeeContentLeft', content(A), `${A.externalUserId}#content`],
      // DeleteAttendee of connected C: C leaves, then is deleted; DeleteMeeting with A and B
      // connected: they leave, then the meeting ends (the media plane's own reports of those
      // departures come later and are not events again).
      ...everyone.map((p) => ['chime:AttendeeLeft', p.attendeeId, p.externalUserId]),
      ['chime:AttendeeDeleted', C.attendeeId, C.externalUserId],
      ['chime:MeetingEnded'],
    ];
    const key = (e) => [e.detail.eventType, e.detail.attendeeId, e.detail.externalUserId].filter(Boolean).join(' ');
    const sorted = (keys) => [...keys].sort();
    const want = sorted(expected.map((x) => x.join(' ')));
    await hook.waitFor((events) => events.some((e) => e.detail?.eventType === 'chime:MeetingEnded') && events.length >= want.length, {
      what: `the ${want.length} events of the session, MeetingEnded included`,
    });
    // Anything late (a duplicate, an event that should not exist) gets a moment to show up.
    await sleep(1_500);
    const events = hook.events();
    assert.deepEqual(sorted(events.map(key)), want, 'the events of the session, deduplicated by id');

    // Every delivery: a POST to the configured path, signed, the same body for the same id.
    const bodies = new Map();
    for (const d of hook.deliveries) {
      assert.equal(d.method, 'POST');
      assert.equal(d.path, hook.hookPath);
      assert.equal(d.headers['content-type'], 'application/json');
      assert.ok(d.signatureOk, `bad signature on ${d.body.toString()}`);
      assert.equal(d.headers['x-carillon-event-id'], d.json.id);
      const previous = bodies.get(d.json.id);
      assert.ok(previous === undefined || previous.equals(d.body), `a retried delivery of ${d.json.id} changed its body`);
      bodies.set(d.json.id, d.body);
    }
    // The receiver's check is not a formality: a changed byte or another secret fails it.
    const sample = hook.deliveries[0];
    const tampered = Buffer.from(sample.body);
    tampered[tampered.length - 2] ^= 1;
    const ts = sample.headers['x-carillon-timestamp'];
    assert.equal(webhookSignatureOk(WEBHOOK_SECRET, ts, tampered, sample.headers['x-carillon-signature']), false);
    assert.equal(webhookSignatureOk('another secret', ts, sample.body, sample.headers['x-carillon-signature']), false);

    for (const e of events) assertEventEnvelope(e, { meetingId, externalMeetingId: EXTERNAL_MEETING_ID });

    // A plausible order, by the event timestamps (deliveries are concurrent).
    const at = (eventType, attendeeId) => {
      const found = events.filter((e) => e.detail.eventType === eventType && (attendeeId === undefined || e.detail.attendeeId === attendeeId));
      assert.equal(found.length, 1, `${eventType} ${attendeeId ?? ''}`);
      return found[0].detail.timestamp;
    };
    const stamps = events.map((e) => e.detail.timestamp);
    assert.equal(at('chime:MeetingStarted'), Math.min(...stamps), 'MeetingStarted comes first');
    assert.equal(at('chime:MeetingEnded'), Math.max(...stamps), 'MeetingEnded comes last');
    assert.ok(events.filter((e) => e.detail.eventType !== 'chime:MeetingEnded').every((e) => e.detail.timestamp < at('chime:MeetingEnded')), 'nothing at the end itself');
    const inOrder = (label, steps) => {
      const times = steps.map(([t, id]) => at(t, id));
      assert.deepEqual(times, [...times].sort((x, y) => x - y), `${label}: ${steps.map(([t]) => t).join(' <= ')} (${times.join(', ')})`);
    };
    for (const p of everyone) {
      inOrder(p.label, [
        ['chime:AttendeeAdded', p.attendeeId],
        ['chime:AttendeeAuthorized', p.attendeeId],
        ['chime:AttendeeJoined', p.attendeeId],
        ['chime:AttendeeVideoStarted', p.attendeeId],
        ['chime:AttendeeVideoStopped', p.attendeeId],
        ['chime:AttendeeLeft', p.attendeeId],
      ]);
    }
    inOrder('content share', [
      ['chime:AttendeeAuthorized', content(A)],
      ['chime:AttendeeContentJoined', content(A)],
      ['chime:AttendeeContentVideoStarted', content(A)],
      ['chime:AttendeeContentVideoStopped', content(A)],
      ['chime:AttendeeContentLeft', content(A)],
    ]);
    assert.ok(at('chime:AttendeeLeft', C.attendeeId) < at('chime:AttendeeDeleted', C.attendeeId), 'C leaves before it is deleted');
  });
});
