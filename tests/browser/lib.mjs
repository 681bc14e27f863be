// Shared helpers of the browser suite: the carillon process, a static server for web/dist, the
// official AWS SDK for JavaScript as REST client, a webhook receiver for the meeting events,
// test-tone WAV files, one headless Chromium process per attendee, and `Participant`, a handle on
// one harness page (web/src/harness.js).
//
// Everything a run leaves for debugging goes to artifacts/browser/: the server's log and each
// page's console (the Chime SDK logs at INFO there, plus every harness event).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const WEB_DIR = path.join(REPO, 'web');
export const WEB_DIST = path.join(WEB_DIR, 'dist');
export const ARTIFACTS = path.join(REPO, 'artifacts', 'browser');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const REGION = 'us-east-1';
export const CREDENTIALS = { accessKeyId: 'AKIDCARILLONDEV', secretAccessKey: 'carillon-dev-secret' };

// The npm packages live in web/node_modules (one package.json for the pages and the tests).
const requireWeb = createRequire(path.join(WEB_DIR, 'package.json'));
const { chromium } = requireWeb('playwright-core');
/** The official `@aws-sdk/client-chime-sdk-meetings` module (commands, client). */
export const meetings = requireWeb('@aws-sdk/client-chime-sdk-meetings');

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

mkdirSync(ARTIFACTS, { recursive: true });

// Everything started here that keeps the process alive (servers, browsers), so that one
// `cleanup()` in a test file's `after` hook releases it all, even after a half-failed `before`.
const running = new Set();

function track(closer) {
  const entry = { close: closer };
  running.add(entry);
  return async () => {
    if (!running.delete(entry)) return;
    await closer();
  };
}

/** Stops every server and browser this process started and has not stopped yet. */
export async function cleanup() {
  const entries = [...running];
  running.clear();
  await Promise.allSettled(entries.map((e) => e.close()));
}

// --- the carillon binary ----------------------------------------------------------------------

export function carillonBin() {
  let bin = process.env.CARILLON_BIN;
  if (!bin) bin = path.join(process.env.CARGO_TARGET_DIR || '/var/tmp/carillon-target', 'debug', 'carillon');
  return path.resolve(REPO, bin);
}

/**
 * Starts `carillon serve` on ephemeral loopback ports with a temporary data directory and waits
 * for its `api …` and `media udp …` lines. `cwd` defaults to the temporary directory; the demo
 * test passes the repository root so that the server finds web/dist. `env` adds variables (e.g.
 * `CARILLON_WEBHOOK_SECRET`) to the environment, from which every other `CARILLON_*` is removed.
 */
export async function startCarillon({ name = 'carillon', cwd, args = [], env: extraEnv = {}, timeoutMs = 30_000 } = {}) {
  const bin = carillonBin();
  if (!existsSync(bin)) {
    throw new Error(`carillon binary not found at ${bin}: build it (cargo build -p carillon-server) or set CARILLON_BIN`);
  }
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'carillon-browser-'));
  const logPath = path.join(ARTIFACTS, `${name}.log`);
  const log = createWriteStream(logPath);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CARILLON_')));
  env.CARILLON_LOG = process.env.CARILLON_TEST_LOG || 'info';
  Object.assign(env, extraEnv);
  const command = [
    'serve',
    '--listen', '127.0.0.1:0',
    '--media-udp', '127.0.0.1:0',
    '--data-dir', path.join(tmp, 'data'),
    '--test-clock',
    ...args,
  ];
  const child = spawn(bin, command, { cwd: cwd ?? tmp, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.pipe(log, { end: false });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));

  let api = '';
  let media = '';
  await new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) {
        child.kill('SIGKILL');
        reject(new Error(`${error}\n$ ${bin} ${command.join(' ')}\n(server log: ${logPath})`));
      } else {
        resolve();
      }
    };
    const timer = setTimeout(() => settle(`carillon did not print its endpoints within ${timeoutMs} ms`), timeoutMs);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      log.write(`[stdout] ${line}\n`);
      if (line.startsWith('api ')) api = line.slice(4).trim();
      if (line.startsWith('media udp ')) media = line.slice(10).trim();
      if (api && media) settle();
    });
    child.once('error', (e) => settle(`could not start carillon: ${e.message}`));
    exited.then((code) => settle(`carillon exited early (${code})`));
  });

  const stop = track(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timeout = sleep(10_000).then(() => 'timeout');
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    }
    log.end();
    await rm(tmp, { recursive: true, force: true });
  });

  const health = await fetch(`${api}/healthz`).catch((e) => ({ status: String(e) }));
  if (health.status !== 200) {
    await stop();
    throw new Error(`${api}/healthz answered ${health.status}`);
  }

  return {
    url: api,
    media,
    logPath,
    /** The official JS SDK client pointed at this server. */
    api: meetingsClient(api),
    stop,
  };
}

// --- REST through the official JS SDK ----------------------------------------------------------

export function meetingsClient(endpoint) {
  return new meetings.ChimeSDKMeetingsClient({
    region: REGION,
    endpoint,
    credentials: CREDENTIALS,
    // A hung server must fail the test, not hang it.
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 15_000 },
  });
}

/** CreateMeeting; returns `{ Meeting }`, the JSON the Chime client configuration takes. */
export async function createMeeting(api, externalMeetingId) {
  const out = await api.send(
    new meetings.CreateMeetingCommand({
      ClientRequestToken: randomUUID(),
      MediaRegion: REGION,
      ExternalMeetingId: externalMeetingId,
    }),
  );
  return { Meeting: out.Meeting };
}

/**
 * CreateMeeting of a replica (media replication, chime-meetings-api.md §3.11): `PrimaryMeetingId`
 * is the MeetingId of a live primary. Returns `{ Meeting }`, like `createMeeting`.
 */
export async function createReplicaMeeting(api, primaryMeetingId, externalMeetingId) {
  const out = await api.send(
    new meetings.CreateMeetingCommand({
      ClientRequestToken: randomUUID(),
      MediaRegion: REGION,
      ExternalMeetingId: externalMeetingId,
      PrimaryMeetingId: primaryMeetingId,
    }),
  );
  return { Meeting: out.Meeting };
}

/** CreateAttendee; returns `{ Attendee }`. */
export async function createAttendee(api, meetingId, externalUserId) {
  const out = await api.send(new meetings.CreateAttendeeCommand({ MeetingId: meetingId, ExternalUserId: externalUserId }));
  return { Attendee: out.Attendee };
}

// --- meeting events: a webhook receiver ----------------------------------------------------------

/**
 * What a receiver does with a delivery (docs/events.md): `X-Carillon-Signature` is
 * `sha256=<hex HMAC-SHA256 of "<X-Carillon-Timestamp>.<raw body>">`, compared in constant time,
 * and the timestamp must be recent (replays are refused).
 */
export function webhookSignatureOk(secret, timestamp, body, header, { toleranceS = 300 } = {}) {
  if (typeof timestamp !== 'string' || !/^[0-9]+$/.test(timestamp) || typeof header !== 'string') return false;
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > toleranceS) return false;
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`);
  const got = Buffer.from(header);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/**
 * A webhook receiver on an ephemeral loopback port: it answers every POST with 204 and records
 * it, with whether its signature verified. Pass `url` to `carillon serve --webhook`.
 * `events()` are the parsed bodies deduplicated by `id` (delivery is at least once).
 */
export async function startWebhookReceiver({ secret, hookPath = '/hooks/chime' }) {
  const deliveries = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const headers = req.headers;
      let json = null;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        // Recorded as unparsable; the test fails on it.
      }
      deliveries.push({
        method: req.method,
        path: req.url,
        headers,
        body,
        json,
        signatureOk: webhookSignatureOk(secret, headers['x-carillon-timestamp'], body, headers['x-carillon-signature']),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const events = () => {
    const seen = new Map();
    for (const d of deliveries) if (d.json && !seen.has(d.json.id)) seen.set(d.json.id, d.json);
    return [...seen.values()];
  };
  return {
    url: `http://127.0.0.1:${server.address().port}${hookPath}`,
    hookPath,
    deliveries,
    events,
    /** Waits until `predicate(events())` is truthy; returns the events then. */
    async waitFor(predicate, { what = 'the events', timeoutMs = 15_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const got = events();
        if (predicate(got)) return got;
        if (Date.now() > deadline) {
          const types = got.map((e) => `${e.detail?.eventType}${e.detail?.externalUserId ? `(${e.detail.externalUserId})` : ''}`);
          throw new Error(`webhook: timed out after ${timeoutMs} ms waiting for ${what}; got ${types.join(', ') || 'nothing'}`);
        }
        await sleep(100);
      }
    },
    close: track(() => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  };
}

/** The members of `detail`, in the order carillon writes them, for an event type. */
function detailKeys(eventType) {
  const attendee = eventType.startsWith('chime:Attendee');
  const networkType = /^chime:Attendee(Content)?(Joined|Left|Dropped)$/.test(eventType);
  const transcription = eventType.startsWith('chime:Transcription');
  return [
    'version',
    'eventType',
    'timestamp',
    'meetingId',
    'externalMeetingId',
    ...(attendee ? ['attendeeId', 'externalUserId'] : []),
    ...(networkType ? ['networkType'] : []),
    'mediaRegion',
    ...(transcription ? ['transcriptionRegion', 'transcriptionConfiguration'] : []),
  ];
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Fails unless `event` is exactly a `Chime Meeting State Change` of `meeting` (chime-meetings-api.md
 * §4): the envelope's members in EventBridge's order, `time` the timestamp's second, and exactly
 * the `detail` members of its type.
 */
export function assertEventEnvelope(event, { meetingId, externalMeetingId, mediaRegion = REGION, region = REGION, account = '000000000000' }) {
  const show = JSON.stringify(event);
  assert.deepEqual(Object.keys(event), ['version', 'id', 'detail-type', 'source', 'account', 'time', 'region', 'resources', 'detail'], show);
  assert.equal(event.version, '0', show);
  assert.match(event.id, GUID, show);
  assert.equal(event['detail-type'], 'Chime Meeting State Change', show);
  assert.equal(event.source, 'aws.chime', show);
  assert.equal(event.account, account, show);
  assert.equal(event.region, region, show);
  assert.deepEqual(event.resources, [], show);
  const d = event.detail;
  assert.match(d.eventType ?? '', /^chime:[A-Za-z]+$/, show);
  assert.deepEqual(Object.keys(d), detailKeys(d.eventType), show);
  assert.equal(d.version, '0', show);
  assert.ok(Number.isSafeInteger(d.timestamp), `timestamp must be a JSON number of milliseconds: ${show}`);
  assert.equal(event.time, new Date(Math.floor(d.timestamp / 1000) * 1000).toISOString().replace('.000Z', 'Z'), show);
  assert.equal(d.meetingId, meetingId, show);
  assert.equal(d.externalMeetingId, externalMeetingId, show);
  assert.equal(d.mediaRegion, mediaRegion, show);
  if ('networkType' in d) assert.equal(d.networkType, 'Voip', show);
  if ('attendeeId' in d) {
    const content = d.eventType.startsWith('chime:AttendeeContent') || (d.eventType === 'chime:AttendeeAuthorized' && d.attendeeId.endsWith('#content'));
    assert.match(content ? d.attendeeId.replace(/#content$/, '') : d.attendeeId, GUID, show);
    assert.equal(d.attendeeId.endsWith('#content'), content, show);
    assert.equal(d.externalUserId.endsWith('#content'), content, show);
  }
}

// --- static files --------------------------------------------------------------------------------

const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

/** Serves `root` (default web/dist) on an ephemeral loopback port; for the harness page. */
export async function serveStatic(root = WEB_DIST) {
  if (!existsSync(path.join(root, 'harness.html'))) {
    throw new Error(`${root} has no harness.html: run \`npm run build\` in web/ (tests/browser/run.sh does)`);
  }
  const server = http.createServer(async (req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    const file = path.join(root, path.normalize(pathname.endsWith('/') ? `${pathname}index.html` : pathname));
    try {
      if (!file.startsWith(root + path.sep) || !(await stat(file)).isFile()) throw new Error('not a file');
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'content-type': CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: track(() => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  };
}

// --- test tones ----------------------------------------------------------------------------------

/**
 * Writes a WAV file (16-bit PCM, mono, 48 kHz) of a pure sine at `frequency` Hz into `dir`.
 * Chromium loops a --use-file-for-fake-audio-capture file (unless its path ends in `%noloop`);
 * a whole number of periods per file makes the loop seamless.
 */
export async function writeToneWav(dir, frequency, { seconds = 10, sampleRate = 48_000, amplitude = 0.25 } = {}) {
  const samples = Math.round(seconds * sampleRate);
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVE', 8, 'ascii');
  wav.write('fmt ', 12, 'ascii');
  wav.writeUInt32LE(16, 16); // fmt chunk size
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(sampleRate, 24);
  wav.writeUInt32LE(sampleRate * 2, 28); // byte rate
  wav.writeUInt16LE(2, 32); // block align
  wav.writeUInt16LE(16, 34); // bits per sample
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    const value = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * frequency * i) / sampleRate));
    wav.writeInt16LE(value, 44 + i * 2);
  }
  const file = path.join(dir, `tone-${frequency}hz.wav`);
  await writeFile(file, wav);
  return file;
}

export async function makeTempDir(prefix = 'carillon-browser-') {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

// --- Chromium --------------------------------------------------------------------------------------

export const CHROMIUM_ARGS = [
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launches one Chromium process (its own fake microphone playing `wav`, if given) with
 * microphone and camera granted, and a page whose console goes to artifacts/browser/<logName>.
 */
export async function launchBrowser(logName, { wav } = {}) {
  const args = [...CHROMIUM_ARGS];
  if (wav) args.push(`--use-file-for-fake-audio-capture=${wav}`);
  const logPath = path.join(ARTIFACTS, `${logName}.console.log`);
  const log = createWriteStream(logPath);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 30_000 });
  const close = track(async () => {
    await browser.close().catch(() => {});
    log.end();
  });
  const context = await browser.newContext({ permissions: ['microphone', 'camera'], viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const started = Date.now();
  const write = (line) => log.writable && log.write(`${((Date.now() - started) / 1000).toFixed(3)} ${line}\n`);
  page.on('console', (m) => write(`${m.type()} ${m.text()}`));
  page.on('pageerror', (e) => write(`pageerror ${e.stack ?? e}`));
  page.on('crash', () => write('page crashed'));
  page.on('requestfailed', (r) => write(`requestfailed ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('websocket', (ws) => {
    write(`websocket open ${ws.url()}`);
    ws.on('socketerror', (e) => write(`websocket error ${ws.url()} ${e}`));
    ws.on('close', () => write(`websocket closed ${ws.url()}`));
  });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  return {
    browser,
    page,
    logPath,
    pageErrors,
    close,
  };
}

// --- one attendee in one browser -------------------------------------------------------------------

/** A harness page in its own Chromium process, bound to one attendee. */
export class Participant {
  /**
   * @param {object} o
   * @param {string} o.label short name used in messages and log file names (e.g. 'A')
   * @param {string} o.externalUserId
   * @param {number} [o.tone] frequency (Hz) of the fake microphone, if any
   */
  static async open({ label, externalUserId, tone, site, api, meetingId, dir, logPrefix = 'browser' }) {
    const wav = tone ? await writeToneWav(dir, tone) : undefined;
    const [handle, attendee] = await Promise.all([
      launchBrowser(`${logPrefix}-${label}`, { wav }),
      createAttendee(api, meetingId, externalUserId),
    ]);
    const participant = new Participant(label, handle, attendee, tone);
    await handle.page.goto(`${site.url}/harness.html`);
    await handle.page.waitForFunction(() => window.harness !== undefined, null, { timeout: 15_000 });
    return participant;
  }

  constructor(label, handle, attendee, tone) {
    this.label = label;
    this.handle = handle;
    this.page = handle.page;
    this.attendee = attendee;
    this.attendeeId = attendee.Attendee.AttendeeId;
    this.externalUserId = attendee.Attendee.ExternalUserId;
    this.tone = tone;
  }

  /** Calls `window.harness[fn](...args)` in the page. */
  call(fn, ...args) {
    return this.page.evaluate(([name, params]) => window.harness[name](...params), [fn, args]);
  }

  state() {
    return this.call('state');
  }

  join(meeting, options = {}) {
    return this.call('join', { meeting, attendee: this.attendee, ...options });
  }

  /**
   * Replica meetings: `audioVideo.promoteToPrimaryMeeting` with the credentials of a primary
   * attendee (CreateAttendee JSON, `{ Attendee }`); resolves to the status code name.
   */
  promote(attendee) {
    return this.call('promote', attendee);
  }

  /** Replica meetings: `audioVideo.demoteFromPrimaryMeeting()`. */
  demote() {
    return this.call('demote');
  }

  /** Polls `harness.state()` until `predicate(state)` is truthy; returns that state. */
  async waitFor(predicate, { what = 'a condition', timeoutMs = 10_000, intervalMs = 200 } = {}) {
    return this.poll(() => this.state(), predicate, { what, timeoutMs, intervalMs });
  }

  /** Polls `probe()` (e.g. `() => p.call('rtcStats')`) until `predicate(value)` is truthy. */
  async poll(probe, predicate, { what = 'a condition', timeoutMs = 10_000, intervalMs = 200 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last;
    for (;;) {
      last = await probe();
      if (predicate(last)) return last;
      if (Date.now() > deadline) break;
      await sleep(intervalMs);
    }
    const detail = summarize(last);
    throw new Error(`${this.label} (${this.externalUserId}): timed out after ${timeoutMs} ms waiting for ${what}\nlast: ${detail}\n(console: ${this.handle.logPath})`);
  }

  close() {
    return this.handle.close();
  }
}

// --- hearing tones ------------------------------------------------------------------------------

/**
 * The thresholds of a received mix: a heard tone is at least
 * `heardAboveFloorDb` above the codec's noise floor and within `heardBelowMaxDb` of the loudest
 * bin; an absent one is at least `absentBelowMaxDb` below the loudest bin.
 */
export const HEARING = { heardAboveFloorDb: 25, heardBelowMaxDb: 12, absentBelowMaxDb: 30 };

/**
 * Measures the received meeting audio of `p` (up to three times, the mix may take a moment to
 * settle) and fails with every deviation: tones in `hears` must be there, tones in `silent` must
 * not. `frequencies` are the tones analysed, `who[f]` names the tone's owner in messages.
 * With `quietAboveFloorDb`, a tone that is less than that above the noise floor also counts as
 * absent (for a client that hears nothing else, where "the loudest tone" is noise).
 */
export async function assertHearing(t, p, { frequencies, who, hears, silent, what, mediaMs = 20_000, quietAboveFloorDb }) {
  await p.poll(
    () => p.call('rtcStats'),
    (stats) => stats.inboundAudio.some((a) => a.packetsReceived > 0 && a.totalAudioEnergy > 0),
    { what: `inbound audio packets with energy (${what})`, timeoutMs: mediaMs },
  );
  const problemsOf = (spectrum) => {
    const problems = [];
    for (const f of hears) {
      const l = spectrum.levels[f];
      if (l.aboveFloorDb < HEARING.heardAboveFloorDb) {
        problems.push(`${who[f]}'s ${f} Hz should be heard but is only ${l.aboveFloorDb} dB above the noise floor`);
      } else if (l.belowMaxDb > HEARING.heardBelowMaxDb) {
        problems.push(`${who[f]}'s ${f} Hz should be about as loud as the loudest tone but is ${l.belowMaxDb} dB below it`);
      }
    }
    for (const f of silent) {
      const l = spectrum.levels[f];
      const quiet = quietAboveFloorDb !== undefined && l.aboveFloorDb < quietAboveFloorDb;
      if (l.belowMaxDb < HEARING.absentBelowMaxDb && !quiet) {
        problems.push(
          `${who[f]}'s ${f} Hz must not be heard but is only ${l.belowMaxDb} dB below the loudest tone (${l.aboveFloorDb} dB above the floor)`,
        );
      }
    }
    return problems;
  };
  let spectrum;
  let problems;
  for (let attempt = 0; attempt < 3; attempt++) {
    spectrum = await p.call('audioSpectrum', frequencies, { durationMs: 1500 });
    problems = problemsOf(spectrum);
    if (problems.length === 0) break;
    await sleep(500);
  }
  const levels = frequencies.map((f) => `${who[f]} ${f} Hz ${spectrum.levels[f].aboveFloorDb}/${-spectrum.levels[f].belowMaxDb} dB`);
  t.diagnostic(`${p.label} ${what} hears (above floor / vs loudest): ${levels.join(', ')}`);
  if (problems.length > 0) {
    const peaks = spectrum.peaks.map((k) => `${k.hz} Hz +${k.aboveFloorDb} dB`).join(', ');
    assert.fail(
      `${p.label} (${p.tone} Hz, ${what}) received the wrong mix:\n  - ${problems.join('\n  - ')}\n` +
        `  levels (above floor / vs loudest): ${levels.join(', ')}\n  strongest peaks: ${peaks}\n  (console: ${p.handle.logPath})`,
    );
  }
  return spectrum;
}

/** A short JSON rendering of a harness state (or anything) for failure messages. */
export function summarize(value) {
  if (value && typeof value === 'object' && Array.isArray(value.events)) {
    const { events, ...rest } = value;
    value = { ...rest, lastEvents: events.slice(-12).map((e) => `${e.atMs}ms ${e.type}`) };
  }
  const text = JSON.stringify(value);
  return text && text.length > 4000 ? `${text.slice(0, 4000)}…` : text;
}
