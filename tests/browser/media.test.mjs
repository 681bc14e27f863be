// End to end: three attendees, each the unmodified amazon-chime-sdk-js in its own headless
// Chromium process with its own fake microphone tone, in one Carillon meeting. The cases run in
// order on the same meeting; each leaves it as it found it (the last two end it).
//
//   A = alice, 440 Hz     B = bob, 660 Hz     C = carol, 880 Hz
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import { cleanup, createMeeting, makeTempDir, meetings, Participant, serveStatic, sleep, startCarillon } from './lib.mjs';

const FREQUENCIES = [440, 660, 880];
const JOIN_TIMEOUT_MS = 15_000; // the SDK's own connection timeout; a join takes well under 5 s
const SIGNAL_MS = 5_000; // roster, mute, data, removal: a few signaling round trips
const MEDIA_MS = 20_000; // first decoded video frames, through ICE/DTLS and keyframes

describe('three attendees in one meeting', () => {
  let server;
  let site;
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
    [server, site] = await Promise.all([startCarillon({ name: 'media-server' }), serveStatic()]);
    meeting = await createMeeting(server.api, 'browser-media-test');
    const common = { site, api: server.api, meetingId: meeting.Meeting.MeetingId, dir, logPrefix: 'media' };
    [A, B, C] = await Promise.all([
      Participant.open({ ...common, label: 'A', externalUserId: 'alice', tone: 440 }),
      Participant.open({ ...common, label: 'B', externalUserId: 'bob', tone: 660 }),
      Participant.open({ ...common, label: 'C', externalUserId: 'carol', tone: 880 }),
    ]);
    everyone = [A, B, C];
  }, { timeout: 90_000 });

  after(async () => {
    await cleanup(); // the browsers, the static server and carillon
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
          expected.every((f) => spectrum.levels[f].aboveFloorDb >= 25 && spectrum.levels[f].belowMaxDb <= 12) &&
          spectrum.levels[p.tone].belowMaxDb >= 30;
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
          assert.ok(spectrum.levels[f].aboveFloorDb >= 25, `${f} Hz should be heard clearly: ${message}`);
          assert.ok(spectrum.levels[f].belowMaxDb <= 12, `${f} Hz should be about as loud as the loudest tone: ${message}`);
        }
        assert.ok(spectrum.levels[p.tone].belowMaxDb >= 30, `its own ${p.tone} Hz must not come back: ${message}`);
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
});
