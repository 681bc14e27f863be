// End to end: a replica viewer that only listens gives up its server-side `Rtc` ("hibernates",
// docs/replication.md) and gets an equivalent one back, on the same connection, when it is
// promoted. The unmodified amazon-chime-sdk-js in headless Chromium: while the viewer
// hibernates, our own STUN code answers Chromium's ICE checks and the mix is sealed with the
// connection's keys; after the promotion a rebuilt `Rtc` must decrypt Chromium's audio and
// answer its renegotiation (the camera) without Chromium noticing anything (no reconnect).
//
//   primary:  A = alice 440 Hz (no camera until the last case)
//   replica:  R = rita 1030 Hz (watches no video until then, so it may hibernate)
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';

import { assertHearing, cleanup, createAttendee, createMeeting, createReplicaMeeting, makeTempDir, Participant, serveStatic, sleep, startCarillon } from './lib.mjs';

const TONES = { A: 440, R: 1030 };
const FREQUENCIES = Object.values(TONES);
const WHO = Object.fromEntries(Object.entries(TONES).map(([label, f]) => [f, label]));
const JOIN_TIMEOUT_MS = 15_000;
const MEDIA_MS = 20_000;
// A viewer hibernates 4 s after its handshake, at the engine's next 5 s sweep.
const HIBERNATE_MS = 20_000;
// Chromium checks an ICE pair every few seconds and gives it up after ~30 s without answers.
const ICE_GIVE_UP_MS = 35_000;

describe('a listening replica viewer hibernates and is woken by its promotion and by a camera to watch', () => {
  let server;
  let site;
  let dir;
  let primary;
  let replica;
  let A;
  let R;
  let promotedR = null;

  before(async () => {
    dir = await makeTempDir();
    [server, site] = await Promise.all([
      startCarillon({ name: 'hibernation-server', env: { CARILLON_LOG: 'info,carillon_media::engine=debug' } }),
      serveStatic(),
    ]);
    primary = await createMeeting(server.api, 'browser-hibernation-primary');
    replica = await createReplicaMeeting(server.api, primary.Meeting.MeetingId, 'browser-hibernation-replica');
    const common = { site, api: server.api, dir, logPrefix: 'hibernation' };
    [A, R] = await Promise.all([
      Participant.open({ ...common, meetingId: primary.Meeting.MeetingId, label: 'A', externalUserId: 'alice', tone: TONES.A }),
      Participant.open({ ...common, meetingId: replica.Meeting.MeetingId, label: 'R', externalUserId: 'rita', tone: TONES.R }),
    ]);
  }, { timeout: 120_000 });

  after(async () => {
    await cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 60_000 });

  /** How often the server logged `line` (the engine's debug log). */
  const logged = async (line) => (await readFile(server.logPath, 'utf8')).split('\n').filter((l) => l.includes(line)).length;

  async function waitLogged(line, count, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while ((await logged(line)) < count) {
      if (Date.now() > deadline) assert.fail(`the server did not log "${line}" ${count} time(s) within ${timeoutMs} ms (log: ${server.logPath})`);
      await sleep(250);
    }
  }

  /**
   * The received mix of `p` (see `assertHearing`). A alone in the primary hears nothing but
   * noise, so a tone near the noise floor also counts as absent.
   */
  const listen = (t, p, { hears, silent, what }) =>
    assertHearing(t, p, { frequencies: FREQUENCIES, who: WHO, hears, silent, what, mediaMs: MEDIA_MS, quietAboveFloorDb: 15 });

  const reconnects = async (p) => (await p.state()).events.filter((e) => e.type === 'audioVideoDidStartConnecting' && e.reconnecting).length;

  test('A joins the primary and R the replica', { timeout: 60_000 }, async () => {
    await Promise.all([A.join(primary, { timeoutMs: JOIN_TIMEOUT_MS }), R.join(replica, { timeoutMs: JOIN_TIMEOUT_MS })]);
  });

  test("R's connection hibernates; R keeps hearing A past the time Chromium's ICE would give up unanswered", { timeout: 120_000 }, async (t) => {
    await listen(t, R, { hears: [TONES.A], silent: [TONES.R], what: 'before hibernating' });
    await waitLogged('replica viewer hibernated', 1, HIBERNATE_MS);
    await sleep(ICE_GIVE_UP_MS);
    await listen(t, R, { hears: [TONES.A], silent: [TONES.R], what: 'hibernated' });
    assert.equal(await reconnects(R), 0, 'R never reconnected');
    assert.equal(await logged('hibernated viewer woken'), 0);
  });

  test("promotion wakes R's connection: A hears R, R still hears A, nobody reconnects", { timeout: 90_000 }, async (t) => {
    promotedR = await createAttendee(server.api, primary.Meeting.MeetingId, 'rita-promoted');
    assert.equal(await R.promote(promotedR), 'OK');
    await waitLogged('hibernated viewer woken', 1, 5_000);
    await listen(t, A, { hears: [TONES.R], silent: [TONES.A], what: 'after R was promoted' });
    await listen(t, R, { hears: [TONES.A], silent: [TONES.R], what: 'promoted' });
    assert.equal(await reconnects(R), 0, 'R never reconnected');
  });

  test("the woken connection renegotiates: R's camera reaches A", { timeout: 90_000 }, async () => {
    const id = promotedR.Attendee.AttendeeId;
    await R.call('startVideo');
    try {
      await A.waitFor((s) => s.remoteTiles.some((tile) => !tile.isContent && tile.boundAttendeeId === id && tile.videoWidth > 0), {
        what: "a playing camera tile of R's promoted attendee",
        timeoutMs: MEDIA_MS,
      });
    } finally {
      await R.call('stopVideo');
    }
    assert.equal(await reconnects(R), 0, 'R never reconnected');
  });

  test('demoted, R hibernates again and keeps hearing A; A no longer hears R', { timeout: 90_000 }, async (t) => {
    await R.demote();
    await waitLogged('replica viewer hibernated', 2, HIBERNATE_MS);
    await listen(t, R, { hears: [TONES.A], silent: [TONES.R], what: 'hibernated again' });
    await listen(t, A, { hears: [], silent: [TONES.R], what: 'after R was demoted' });
    assert.equal(await reconnects(R), 0, 'R never reconnected');
  });

  test("A's camera wakes the hibernated R: it subscribes, and the video plays", { timeout: 90_000 }, async () => {
    await A.call('startVideo');
    try {
      await R.waitFor((s) => s.remoteTiles.some((tile) => !tile.isContent && tile.boundAttendeeId === A.attendeeId && tile.videoWidth > 0), {
        what: "a playing camera tile of A's",
        timeoutMs: MEDIA_MS,
      });
    } finally {
      await A.call('stopVideo');
    }
    assert.equal(await logged('hibernated viewer woken'), 2);
    assert.equal(await reconnects(R), 0, 'R never reconnected');
  });
});
