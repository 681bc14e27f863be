// The browser-test harness page. It runs the unmodified amazon-chime-sdk-js and exposes
// `window.harness`, a set of async functions that tests/browser/ call through
// `page.evaluate`. Everything the SDK reports is recorded and returned by `state()`.
import {
  ConsoleLogger,
  DefaultDeviceController,
  DefaultMeetingSession,
  LogLevel,
  MeetingSessionConfiguration,
  MeetingSessionCredentials,
  MeetingSessionStatusCode,
} from 'amazon-chime-sdk-js';

const CHAT_TOPIC = 'chat';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let session = null;
let audioVideo = null;
let joinedAt = 0;
let contentShareAnimation = null;
const videoElements = new Map(); // tileId -> <video>
const volumeSubscribed = new Set();
const rec = {
  meetingId: null,
  attendeeId: null,
  externalUserId: null,
  connecting: false,
  started: false,
  startMs: null, // ms from join() to audioVideoDidStart
  stopped: null, // { code, name, isFailure, isTerminal, atMs }
  events: [], // every callback, in order: { atMs, type, ...details }
  roster: {}, // attendeeId -> { present, externalUserId, muted, volume, maxVolume, signalStrength, dropped }
  remoteVideoSources: [], // latest remoteVideoSourcesDidChange: [{ attendeeId, externalUserId }]
  videoAvailability: null, // latest videoAvailabilityDidChange
  // videoAvailability.canStartLocalVideo. null = no videoAvailabilityDidChange yet: the SDK starts
  // from {canStartLocalVideo: false, remoteVideoAvailable: false} and reports changes only, so an
  // INDEX with at_capacity=true and no sources (a replica attendee's) fires no callback.
  canStartLocalVideo: null,
  promotions: [], // promote() results: { attendeeId, externalUserId, code, name, atMs, elapsedMs }
  demotions: [], // audioVideoWasDemotedFromPrimaryMeeting: { code, name, atMs }
  contentShare: { started: false, stopped: false },
  dataMessages: [], // received on topic 'chat'
  sentDataMessages: [],
  errors: [],
};

function record(type, details = {}) {
  const event = { atMs: joinedAt ? Date.now() - joinedAt : 0, type, ...details };
  rec.events.push(event);
  console.log(`[harness] ${type} ${JSON.stringify(details)}`);
  return event;
}

window.addEventListener('error', (e) => rec.errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', (e) => rec.errors.push(String(e.reason)));

function statusName(code) {
  return MeetingSessionStatusCode[code] ?? `Unknown(${code})`;
}

async function waitUntil(predicate, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      const last = rec.events.slice(-8).map((e) => `${e.atMs}ms ${e.type}`);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last events: ${last.join(', ')}`);
    }
    await sleep(25);
  }
}

function requireSession() {
  if (!audioVideo) throw new Error('not joined: call harness.join() first');
  return audioVideo;
}

// --- observers -------------------------------------------------------------------------------

const observer = {
  audioVideoDidStartConnecting(reconnecting) {
    rec.connecting = true;
    record('audioVideoDidStartConnecting', { reconnecting });
  },
  audioVideoDidStart() {
    rec.started = true;
    rec.startMs = Date.now() - joinedAt;
    record('audioVideoDidStart');
  },
  audioVideoDidStop(status) {
    const code = status.statusCode();
    rec.stopped = {
      code,
      name: statusName(code),
      isFailure: status.isFailure(),
      isTerminal: status.isTerminal(),
      atMs: Date.now() - joinedAt,
    };
    record('audioVideoDidStop', { name: rec.stopped.name, code });
  },
  videoTileDidUpdate(tileState) {
    record('videoTileDidUpdate', tileSummary(tileState));
    if (!tileState.boundAttendeeId || tileState.tileId == null) return;
    let element = videoElements.get(tileState.tileId);
    if (!element) {
      element = document.createElement('video');
      element.id = `tile-${tileState.tileId}`;
      element.autoplay = true;
      element.muted = true;
      element.playsInline = true;
      document.getElementById('tiles').appendChild(element);
      videoElements.set(tileState.tileId, element);
    }
    audioVideo.bindVideoElement(tileState.tileId, element);
  },
  videoTileWasRemoved(tileId) {
    record('videoTileWasRemoved', { tileId });
    const element = videoElements.get(tileId);
    if (element) element.remove();
    videoElements.delete(tileId);
  },
  videoAvailabilityDidChange(availability) {
    rec.videoAvailability = {
      canStartLocalVideo: availability.canStartLocalVideo,
      remoteVideoAvailable: availability.remoteVideoAvailable,
    };
    rec.canStartLocalVideo = availability.canStartLocalVideo;
    record('videoAvailabilityDidChange', rec.videoAvailability);
  },
  // Replica meetings only: the promotion ended (demote(): OK; DeleteAttendee of the primary
  // attendee, i.e. a server PRIMARY_MEETING_LEAVE: AudioVideoWasRemovedFromPrimaryMeeting; a
  // reconnect while promoted: AudioVideoDisconnectedWhilePromoted).
  audioVideoWasDemotedFromPrimaryMeeting(status) {
    const code = status.statusCode();
    const demotion = { code, name: statusName(code), atMs: Date.now() - joinedAt };
    rec.demotions.push(demotion);
    record('audioVideoWasDemotedFromPrimaryMeeting', { name: demotion.name, code });
  },
  remoteVideoSourcesDidChange(sources) {
    rec.remoteVideoSources = sources.map((s) => ({
      attendeeId: s.attendee.attendeeId,
      externalUserId: s.attendee.externalUserId,
    }));
    record('remoteVideoSourcesDidChange', { sources: rec.remoteVideoSources });
  },
  videoSendDidBecomeUnavailable() {
    record('videoSendDidBecomeUnavailable');
  },
  connectionDidBecomePoor() {
    record('connectionDidBecomePoor');
  },
  connectionDidSuggestStopVideo() {
    record('connectionDidSuggestStopVideo');
  },
};

const contentShareObserver = {
  contentShareDidStart() {
    rec.contentShare.started = true;
    rec.contentShare.stopped = false;
    record('contentShareDidStart');
  },
  contentShareDidStop() {
    rec.contentShare.stopped = true;
    record('contentShareDidStop');
  },
};

function onPresence(attendeeId, present, externalUserId, dropped) {
  const entry = (rec.roster[attendeeId] ??= {
    present,
    externalUserId,
    muted: null,
    volume: null,
    maxVolume: 0,
    signalStrength: null,
    dropped: false,
  });
  entry.present = present;
  entry.externalUserId = externalUserId ?? entry.externalUserId;
  entry.dropped = Boolean(dropped);
  record('presence', { attendeeId, present, externalUserId, dropped: entry.dropped });
  if (present && !volumeSubscribed.has(attendeeId)) {
    volumeSubscribed.add(attendeeId);
    audioVideo.realtimeSubscribeToVolumeIndicator(attendeeId, onVolume);
  }
}

// volume / muted / signalStrength are null when unchanged.
function onVolume(attendeeId, volume, muted, signalStrength) {
  const entry = rec.roster[attendeeId];
  if (!entry) return;
  if (volume !== null) {
    entry.volume = volume;
    entry.maxVolume = Math.max(entry.maxVolume, volume);
  }
  if (muted !== null && muted !== entry.muted) {
    entry.muted = muted;
    record('muted', { attendeeId, muted });
  }
  if (signalStrength !== null) entry.signalStrength = signalStrength;
}

function onDataMessage(message) {
  const received = {
    topic: message.topic,
    text: message.text(),
    senderAttendeeId: message.senderAttendeeId,
    senderExternalUserId: message.senderExternalUserId,
    timestampMs: message.timestampMs,
    throttled: message.throttled,
  };
  rec.dataMessages.push(received);
  record('dataMessage', received);
}

// --- tiles -------------------------------------------------------------------------------------

function tileSummary(tileState) {
  return {
    tileId: tileState.tileId,
    localTile: tileState.localTile,
    isContent: tileState.isContent,
    boundAttendeeId: tileState.boundAttendeeId,
    boundExternalUserId: tileState.boundExternalUserId,
    active: tileState.active,
    paused: tileState.paused,
    streamId: tileState.streamId,
  };
}

async function tileStates() {
  const stats = await inboundVideoByTrack();
  return audioVideo.getAllVideoTiles().map((tile) => {
    const state = tile.state();
    const element = videoElements.get(state.tileId) ?? state.boundVideoElement ?? null;
    const summary = tileSummary(state);
    if (element) {
      const quality = element.getVideoPlaybackQuality?.();
      const track = element.srcObject?.getVideoTracks?.()[0];
      const inbound = track ? stats.get(track.id) : undefined;
      Object.assign(summary, {
        videoWidth: element.videoWidth,
        videoHeight: element.videoHeight,
        readyState: element.readyState,
        totalVideoFrames: quality ? quality.totalVideoFrames : null,
        framesDecoded: inbound ? inbound.framesDecoded : null,
      });
    }
    return summary;
  });
}

async function inboundVideoByTrack() {
  const byTrack = new Map();
  if (!audioVideo) return byTrack;
  try {
    const report = await audioVideo.getRTCPeerConnectionStats();
    report?.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier) byTrack.set(s.trackIdentifier, s);
    });
  } catch (e) {
    // no peer connection yet
  }
  return byTrack;
}

// --- audio analysis ----------------------------------------------------------------------------

// Averages the magnitude spectrum of `stream` over `durationMs` and reports, for each requested
// frequency, the level at that bin (max over +-2 bins) in dB, relative to the median level of the
// 100 Hz - 4 kHz band (for a couple of pure tones, the codec's noise floor: aboveFloorDb) and
// below the loudest bin of the whole spectrum (belowMaxDb). A tone that is present in a mix of
// equally loud tones is near belowMaxDb 0 and far above the floor; an absent one is tens of dB
// below the loudest. `peaks` lists the strongest local maxima, for failure messages.
async function analyseStream(stream, frequencies, durationMs) {
  const context = new AudioContext();
  try {
    await context.resume();
    const source = context.createMediaStreamSource(stream);
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    const sink = context.createGain();
    sink.gain.value = 0;
    source.connect(analyser);
    analyser.connect(sink);
    sink.connect(context.destination);
    await sleep(250); // let one full window of fresh samples in

    const bins = analyser.frequencyBinCount;
    const power = new Float64Array(bins);
    const frame = new Float32Array(bins);
    const wave = new Float32Array(analyser.fftSize);
    let frames = 0;
    let rmsSum = 0;
    const end = performance.now() + durationMs;
    while (performance.now() < end) {
      analyser.getFloatFrequencyData(frame);
      for (let i = 0; i < bins; i++) if (Number.isFinite(frame[i])) power[i] += 10 ** (frame[i] / 10);
      analyser.getFloatTimeDomainData(wave);
      let sq = 0;
      for (const x of wave) sq += x * x;
      rmsSum += sq / wave.length;
      frames += 1;
      await sleep(50);
    }
    const binHz = context.sampleRate / analyser.fftSize;
    const db = Array.from(power, (p) => (p > 0 ? 10 * Math.log10(p / frames) : -200));
    const band = db.slice(Math.ceil(100 / binHz), Math.floor(4000 / binHz)).sort((a, b) => a - b);
    const floorDb = band[Math.floor(band.length / 2)];
    const maxDb = Math.max(...db);
    const levels = {};
    for (const f of frequencies) {
      const center = Math.round(f / binHz);
      let peak = -200;
      for (let i = Math.max(0, center - 2); i <= Math.min(bins - 1, center + 2); i++) peak = Math.max(peak, db[i]);
      levels[f] = { db: round1(peak), aboveFloorDb: round1(peak - floorDb), belowMaxDb: round1(maxDb - peak) };
    }
    const peaks = [];
    for (let i = 1; i < bins - 1; i++) {
      if (db[i] > db[i - 1] && db[i] >= db[i + 1] && db[i] - floorDb > 20) peaks.push([i * binHz, db[i]]);
    }
    peaks.sort((a, b) => b[1] - a[1]);
    return {
      sampleRate: context.sampleRate,
      binHz: round1(binHz * 100) / 100,
      frames,
      rmsDb: round1(10 * Math.log10(rmsSum / Math.max(frames, 1) + 1e-20)),
      floorDb: round1(floorDb),
      maxDb: round1(maxDb),
      levels,
      peaks: peaks.slice(0, 6).map(([hz, level]) => ({ hz: Math.round(hz), aboveFloorDb: round1(level - floorDb) })),
    };
  } finally {
    await context.close();
  }
}

function round1(x) {
  return Math.round(x * 10) / 10;
}

// The first microphone (Chromium's fake device, playing --use-file-for-fake-audio-capture) with
// the browser's voice processing off: echo cancellation, noise suppression and gain control
// would treat a steady test tone as noise and attenuate or distort it. A MediaTrackConstraints
// "device" is passed to getUserMedia as-is by the SDK's DefaultDeviceController.
function microphoneConstraints(deviceId) {
  return {
    deviceId: { exact: deviceId },
    echoCancellation: false,
    noiseSuppression: false,
    autoGainControl: false,
  };
}

// --- the API the tests call -------------------------------------------------------------------

const harness = {
  /**
   * Builds a meeting session from CreateMeeting / CreateAttendee JSON (either `{Meeting: …}`
   * or the bare object), selects the first microphone, binds the audio element, starts, and
   * resolves once audioVideoDidStart fires (rejects on audioVideoDidStop or timeout).
   */
  async join({ meeting, attendee, audio = true, video = false, timeoutMs = 15000, logLevel = 'INFO' }) {
    if (session) throw new Error('already joined');
    joinedAt = Date.now();
    const logger = new ConsoleLogger('chime', LogLevel[logLevel] ?? LogLevel.INFO);
    const configuration = new MeetingSessionConfiguration(meeting, attendee);
    session = new DefaultMeetingSession(configuration, logger, new DefaultDeviceController(logger));
    audioVideo = session.audioVideo;
    rec.meetingId = configuration.meetingId;
    rec.attendeeId = configuration.credentials.attendeeId;
    rec.externalUserId = configuration.credentials.externalUserId;
    record('join', { meetingId: rec.meetingId, attendeeId: rec.attendeeId, externalUserId: rec.externalUserId });

    audioVideo.addObserver(observer);
    audioVideo.addContentShareObserver(contentShareObserver);
    audioVideo.realtimeSubscribeToAttendeeIdPresence(onPresence);
    audioVideo.realtimeSubscribeToReceiveDataMessage(CHAT_TOPIC, onDataMessage);

    if (audio) {
      const microphones = await audioVideo.listAudioInputDevices();
      if (microphones.length === 0) throw new Error('no audio input device');
      await audioVideo.startAudioInput(microphoneConstraints(microphones[0].deviceId));
    }
    await audioVideo.bindAudioElement(document.getElementById('meeting-audio'));

    audioVideo.start();
    await waitUntil(() => rec.started || rec.stopped, timeoutMs, 'audioVideoDidStart');
    if (!rec.started) throw new Error(`join failed: audioVideoDidStop(${rec.stopped.name}) after ${rec.stopped.atMs} ms`);
    document.getElementById('status').textContent = `started ${rec.externalUserId}`;
    if (video) await harness.startVideo();
    return { attendeeId: rec.attendeeId, startMs: rec.startMs };
  },

  async startVideo() {
    const av = requireSession();
    const cameras = await av.listVideoInputDevices();
    if (cameras.length === 0) throw new Error('no video input device');
    await av.startVideoInput(cameras[0].deviceId);
    av.startLocalVideoTile();
    record('startVideo', { deviceId: cameras[0].deviceId });
  },

  async stopVideo() {
    const av = requireSession();
    av.stopLocalVideoTile();
    await av.stopVideoInput();
    record('stopVideo');
  },

  async mute() {
    const ok = requireSession().realtimeMuteLocalAudio();
    record('mute');
    return ok;
  },

  async unmute() {
    const ok = requireSession().realtimeUnmuteLocalAudio();
    record('unmute');
    return ok;
  },

  /** Shares an animated canvas (so frames keep coming) as content. */
  async startContentShare({ width = 640, height = 360, fps = 15 } = {}) {
    const av = requireSession();
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    document.getElementById('tiles').appendChild(canvas);
    const g = canvas.getContext('2d');
    let frame = 0;
    const draw = () => {
      frame += 1;
      g.fillStyle = `hsl(${(frame * 3) % 360} 60% 30%)`;
      g.fillRect(0, 0, width, height);
      g.fillStyle = '#fff';
      g.fillRect((frame * 8) % width, height / 3, 60, 60);
      g.font = '32px sans-serif';
      g.fillText(`content ${rec.externalUserId} #${frame}`, 20, height - 30);
    };
    draw();
    contentShareAnimation = setInterval(draw, 1000 / fps);
    const stream = canvas.captureStream(fps);
    await av.startContentShare(stream);
    record('startContentShare', { width, height });
  },

  async stopContentShare() {
    requireSession().stopContentShare();
    clearInterval(contentShareAnimation);
    contentShareAnimation = null;
    record('stopContentShare');
  },

  async sendData(text, lifetimeMs = 0) {
    requireSession().realtimeSendDataMessage(CHAT_TOPIC, text, lifetimeMs);
    rec.sentDataMessages.push({ text, lifetimeMs });
    record('sendData', { text });
  },

  /**
   * Replica meetings: promotes this (replica) session into the primary meeting with the
   * credentials of a primary attendee (CreateAttendee on the primary), over the live
   * connection. Takes `{attendeeId, externalUserId, joinToken}` or CreateAttendee JSON
   * (`{Attendee: {AttendeeId, ExternalUserId, JoinToken}}` or the bare Attendee). Resolves to
   * the MeetingSessionStatusCode name of the result ('OK', 'AudioAuthenticationRejected', …;
   * the SDK gives SignalingRequestFailed when no PRIMARY_MEETING_JOIN_ACK comes within its
   * connection timeout). Every attempt is recorded in state().promotions.
   */
  async promote(credentialsJson) {
    const av = requireSession();
    const json = credentialsJson?.Attendee ?? credentialsJson ?? {};
    const credentials = new MeetingSessionCredentials();
    credentials.attendeeId = json.attendeeId ?? json.AttendeeId ?? null;
    credentials.externalUserId = json.externalUserId ?? json.ExternalUserId ?? null;
    credentials.joinToken = json.joinToken ?? json.JoinToken ?? null;
    const started = Date.now();
    record('promote', { attendeeId: credentials.attendeeId, externalUserId: credentials.externalUserId });
    const status = await av.promoteToPrimaryMeeting(credentials);
    const code = status.statusCode();
    const result = {
      attendeeId: credentials.attendeeId,
      externalUserId: credentials.externalUserId,
      code,
      name: statusName(code),
      atMs: Date.now() - joinedAt,
      elapsedMs: Date.now() - started,
    };
    rec.promotions.push(result);
    record('promoteResult', result);
    return result.name;
  },

  /** Replica meetings: leaves the primary (PRIMARY_MEETING_LEAVE); the session goes on. */
  async demote() {
    requireSession().demoteFromPrimaryMeeting();
    record('demote');
  },

  /** stop() and wait for audioVideoDidStop; resolves to the stop status. */
  async leave({ timeoutMs = 10000 } = {}) {
    const av = requireSession();
    if (!rec.stopped) {
      av.stop();
      await waitUntil(() => rec.stopped, timeoutMs, 'audioVideoDidStop after leave');
    }
    return rec.stopped;
  },

  /** Everything recorded so far plus the live tile states. */
  async state() {
    const audioElement = document.getElementById('meeting-audio');
    const tiles = audioVideo ? await tileStates() : [];
    return {
      ...rec,
      localTile: tiles.find((t) => t.localTile) ?? null,
      remoteTiles: tiles.filter((t) => !t.localTile),
      audioElement: {
        bound: Boolean(audioElement.srcObject),
        paused: audioElement.paused,
        readyState: audioElement.readyState,
      },
    };
  },

  /** Levels (dB above the noise floor) of the given frequencies in the RECEIVED meeting audio. */
  async audioSpectrum(frequencies, { durationMs = 1500 } = {}) {
    const av = requireSession();
    const stream = (await av.getCurrentMeetingAudioStream()) ?? document.getElementById('meeting-audio').srcObject;
    if (!stream || stream.getAudioTracks().length === 0) throw new Error('no received meeting audio stream');
    return analyseStream(stream, frequencies, durationMs);
  },

  /** A summary of the meeting peer connection's stats. */
  async rtcStats() {
    const report = await requireSession().getRTCPeerConnectionStats();
    const out = { inboundAudio: [], inboundVideo: [], outboundAudio: [], outboundVideo: [], candidatePairs: [] };
    report?.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.inboundAudio.push(pick(s, ['mid', 'ssrc', 'packetsReceived', 'packetsLost', 'bytesReceived', 'totalAudioEnergy', 'audioLevel', 'jitter', 'trackIdentifier']));
      } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.inboundVideo.push(pick(s, ['mid', 'ssrc', 'packetsReceived', 'framesReceived', 'framesDecoded', 'keyFramesDecoded', 'frameWidth', 'frameHeight', 'trackIdentifier', 'decoderImplementation']));
      } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        out.outboundAudio.push(pick(s, ['mid', 'ssrc', 'packetsSent', 'bytesSent']));
      } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.outboundVideo.push(pick(s, ['mid', 'ssrc', 'packetsSent', 'framesEncoded', 'frameWidth', 'frameHeight', 'encoderImplementation']));
      } else if (s.type === 'candidate-pair' && s.nominated) {
        out.candidatePairs.push(pick(s, ['state', 'bytesSent', 'bytesReceived', 'currentRoundTripTime']));
      }
    });
    return out;
  },

  /**
   * Tooling self-check without any server: the first microphone (with the same constraints as
   * join) is sent through a local RTCPeerConnection pair (Opus), played by an <audio> element,
   * and analysed exactly like audioSpectrum. Proves the fake-audio WAV and the analysis work.
   */
  async loopbackSpectrum(frequencies, { durationMs = 1500 } = {}) {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
    if (devices.length === 0) throw new Error('no audio input device');
    const mic = await navigator.mediaDevices.getUserMedia({ audio: microphoneConstraints(devices[0].deviceId) });
    const a = new RTCPeerConnection();
    const b = new RTCPeerConnection();
    try {
      a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
      b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
      const received = new Promise((resolve) => (b.ontrack = (e) => resolve(e.streams[0])));
      mic.getTracks().forEach((t) => a.addTrack(t, mic));
      await a.setLocalDescription();
      await b.setRemoteDescription(a.localDescription);
      await b.setLocalDescription();
      await a.setRemoteDescription(b.localDescription);
      const stream = await received;
      const element = document.createElement('audio');
      element.autoplay = true;
      element.srcObject = stream;
      document.body.appendChild(element);
      await element.play();
      await sleep(500);
      const result = await analyseStream(stream, frequencies, durationMs);
      element.remove();
      return result;
    } finally {
      a.close();
      b.close();
      mic.getTracks().forEach((t) => t.stop());
    }
  },
};

function pick(object, keys) {
  const out = {};
  for (const k of keys) if (object[k] !== undefined) out[k] = object[k];
  return out;
}

window.harness = harness;
document.getElementById('status').textContent = 'ready';
