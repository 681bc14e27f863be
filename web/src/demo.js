// Carillon's demo meeting page: the unmodified amazon-chime-sdk-js against Carillon, with the
// official AWS SDK for JavaScript making the CreateMeeting / CreateAttendee calls to this same
// origin. `document.body.dataset.state` is idle | joining | joined | left | failed.
import {
  ChimeSDKMeetingsClient,
  CreateAttendeeCommand,
  CreateMeetingCommand,
} from '@aws-sdk/client-chime-sdk-meetings';
import {
  ConsoleLogger,
  DefaultDeviceController,
  DefaultMeetingSession,
  LogLevel,
  MeetingSessionConfiguration,
  MeetingSessionStatusCode,
} from 'amazon-chime-sdk-js';

const CHAT_TOPIC = 'chat';
const CHAT_LIFETIME_MS = 5 * 60 * 1000; // late joiners get the last five minutes of chat
const MEDIA_REGION = 'us-east-1';

const $ = (id) => document.getElementById(id);
let audioVideo = null;
let self = null; // { attendeeId, externalUserId }
const roster = new Map(); // attendeeId -> { name, muted, volume, element }
const tiles = new Map(); // tileId -> element

window.demo = { get state() { return document.body.dataset.state; }, roster, get self() { return self; } };

function setState(state, message) {
  document.body.dataset.state = state;
  if (message) $('status').textContent = message;
}

// --- joining -----------------------------------------------------------------------------------

// CreateMeeting is idempotent on ClientRequestToken while the meeting lives, so everyone who
// types the same meeting name lands in the same meeting (and a new one is made once it ended).
function meetingToken(name) {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (const ch of name.trim().toLowerCase()) {
    const c = ch.codePointAt(0);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  return `carillon-demo-${h1.toString(16).padStart(8, '0')}${h2.toString(16).padStart(8, '0')}`;
}

async function join(event) {
  event.preventDefault();
  const meetingName = $('meeting-name').value.trim();
  const userName = $('user-name').value.trim();
  $('join').disabled = true;
  setState('joining', `Joining ${meetingName}…`);
  try {
    const api = new ChimeSDKMeetingsClient({
      region: MEDIA_REGION,
      endpoint: location.origin,
      credentials: {
        accessKeyId: $('access-key-id').value.trim(),
        secretAccessKey: $('secret-access-key').value,
      },
    });
    const { Meeting } = await api.send(
      new CreateMeetingCommand({
        ClientRequestToken: meetingToken(meetingName),
        MediaRegion: MEDIA_REGION,
        ExternalMeetingId: meetingName,
      }),
    );
    const { Attendee } = await api.send(
      new CreateAttendeeCommand({ MeetingId: Meeting.MeetingId, ExternalUserId: userName }),
    );
    await startSession({ Meeting }, { Attendee });
  } catch (error) {
    console.error(error);
    setState('failed', `Could not join: ${error.name ?? 'Error'}: ${error.message}`);
    $('join').disabled = false;
  }
}

async function startSession(meeting, attendee) {
  const logger = new ConsoleLogger('chime', LogLevel.WARN);
  const configuration = new MeetingSessionConfiguration(meeting, attendee);
  const session = new DefaultMeetingSession(configuration, logger, new DefaultDeviceController(logger));
  audioVideo = session.audioVideo;
  self = {
    attendeeId: configuration.credentials.attendeeId,
    externalUserId: configuration.credentials.externalUserId,
  };

  audioVideo.addObserver(observer);
  audioVideo.addContentShareObserver(contentShareObserver);
  audioVideo.realtimeSubscribeToAttendeeIdPresence(onPresence);
  audioVideo.realtimeSubscribeToMuteAndUnmuteLocalAudio((muted) => {
    $('mute').textContent = muted ? 'Unmute' : 'Mute';
    $('mute').classList.toggle('on', muted);
  });
  audioVideo.realtimeSubscribeToReceiveDataMessage(CHAT_TOPIC, (message) => {
    const mine = message.senderAttendeeId === self.attendeeId;
    if (mine && message.throttled) addChat('You', message.text(), 'throttled');
    else if (!mine) addChat(message.senderExternalUserId, message.text());
  });

  const microphones = await audioVideo.listAudioInputDevices();
  if (microphones.length > 0) await audioVideo.startAudioInput(microphones[0].deviceId);
  else console.warn('no microphone: joining without audio input');
  await audioVideo.bindAudioElement($('meeting-audio'));
  audioVideo.start();
}

const observer = {
  audioVideoDidStart() {
    $('join-form').hidden = true;
    $('meeting').hidden = false;
    $('join').disabled = false;
    setState('joined', `In ${$('meeting-name').value.trim()} as ${self.externalUserId}`);
  },
  audioVideoDidStop(status) {
    const name = MeetingSessionStatusCode[status.statusCode()];
    const why = {
      Left: 'You left the meeting.',
      MeetingEnded: 'The meeting has ended.',
      AudioAttendeeRemoved: 'You were removed from the meeting.',
      AudioJoinedFromAnotherDevice: 'You joined from another device.',
    }[name];
    cleanUp();
    setState(name === 'Left' ? 'left' : 'failed', why ?? `Disconnected: ${name}`);
  },
  videoTileDidUpdate(tileState) {
    if (!tileState.boundAttendeeId || tileState.tileId == null) return;
    let element = tiles.get(tileState.tileId);
    if (!element) {
      element = document.createElement('div');
      element.className = 'tile';
      element.innerHTML = '<video autoplay playsinline muted></video><span class="name"></span>';
      $('tiles').appendChild(element);
      tiles.set(tileState.tileId, element);
    }
    element.classList.toggle('content', tileState.isContent);
    element.dataset.attendeeId = tileState.boundAttendeeId;
    element.querySelector('.name').textContent = tileLabel(tileState);
    audioVideo.bindVideoElement(tileState.tileId, element.querySelector('video'));
  },
  videoTileWasRemoved(tileId) {
    tiles.get(tileId)?.remove();
    tiles.delete(tileId);
  },
};

const contentShareObserver = {
  contentShareDidStart() {
    $('share').textContent = 'Stop sharing';
    $('share').classList.add('on');
  },
  contentShareDidStop() {
    $('share').textContent = 'Share screen';
    $('share').classList.remove('on');
  },
};

function cleanUp() {
  if (audioVideo) {
    audioVideo.stopVideoInput().catch(() => {});
    audioVideo.stopAudioInput().catch(() => {});
    audioVideo.unbindAudioElement();
  }
  audioVideo = null;
  for (const element of tiles.values()) element.remove();
  tiles.clear();
  roster.clear();
  $('roster').replaceChildren();
  $('chat-log').replaceChildren();
  $('camera').textContent = 'Start camera';
  $('camera').classList.remove('on');
  $('meeting').hidden = true;
  $('join-form').hidden = false;
  $('join').disabled = false;
}

// --- roster ------------------------------------------------------------------------------------

function nameOf(attendeeId, fallback) {
  if (attendeeId === self?.attendeeId) return `${self.externalUserId} (you)`;
  return roster.get(attendeeId)?.name ?? fallback ?? attendeeId;
}

function tileLabel(tileState) {
  const base = tileState.boundAttendeeId.replace(/#content$/, '');
  const name = tileState.localTile ? `${self.externalUserId} (you)` : nameOf(base, tileState.boundExternalUserId);
  return tileState.isContent ? `${name} · screen` : name;
}

function onPresence(attendeeId, present, externalUserId) {
  if (attendeeId.endsWith('#content')) return; // a content share, shown as a tile
  if (!present) {
    roster.get(attendeeId)?.element.remove();
    roster.delete(attendeeId);
    return;
  }
  if (roster.has(attendeeId)) return;
  const element = document.createElement('li');
  element.innerHTML = '<span class="level"><i></i></span><span class="who"></span><span class="mic"></span>';
  const entry = { name: externalUserId, muted: false, element };
  element.querySelector('.who').textContent = attendeeId === self.attendeeId ? `${externalUserId} (you)` : externalUserId;
  roster.set(attendeeId, entry);
  $('roster').appendChild(element);
  audioVideo.realtimeSubscribeToVolumeIndicator(attendeeId, (id, volume, muted) => {
    if (volume !== null) element.querySelector('.level i').style.width = `${Math.round(volume * 100)}%`;
    if (muted !== null) {
      entry.muted = muted;
      element.querySelector('.mic').textContent = muted ? 'muted' : '';
    }
  });
}

// --- controls ----------------------------------------------------------------------------------

function toggleMute() {
  if (audioVideo.realtimeIsLocalAudioMuted()) audioVideo.realtimeUnmuteLocalAudio();
  else audioVideo.realtimeMuteLocalAudio();
}

async function toggleCamera() {
  const button = $('camera');
  button.disabled = true;
  try {
    if (audioVideo.hasStartedLocalVideoTile()) {
      audioVideo.stopLocalVideoTile();
      await audioVideo.stopVideoInput();
      button.textContent = 'Start camera';
      button.classList.remove('on');
    } else {
      const cameras = await audioVideo.listVideoInputDevices();
      if (cameras.length === 0) throw new Error('no camera found');
      await audioVideo.startVideoInput(cameras[0].deviceId);
      audioVideo.startLocalVideoTile();
      button.textContent = 'Stop camera';
      button.classList.add('on');
    }
  } catch (error) {
    console.error(error);
    $('status').textContent = `Camera: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function toggleShare() {
  if ($('share').classList.contains('on')) {
    audioVideo.stopContentShare();
    return;
  }
  try {
    await audioVideo.startContentShareFromScreenCapture();
  } catch (error) {
    console.error(error);
    $('status').textContent = `Screen share: ${error.message}`;
  }
}

// --- chat --------------------------------------------------------------------------------------

function addChat(who, text, kind) {
  const item = document.createElement('li');
  const name = document.createElement('span');
  name.className = 'who';
  name.textContent = who;
  item.append(name, document.createTextNode(text));
  if (kind === 'throttled') {
    item.classList.add('throttled');
    item.append(' (not delivered: too many messages)');
  }
  $('chat-log').appendChild(item);
  item.scrollIntoView({ block: 'nearest' });
}

function sendChat(event) {
  event.preventDefault();
  const text = $('chat-input').value.trim();
  if (!text || !audioVideo) return;
  audioVideo.realtimeSendDataMessage(CHAT_TOPIC, text, CHAT_LIFETIME_MS);
  addChat('You', text); // data messages are not echoed to their sender
  $('chat-input').value = '';
}

// --- wiring ------------------------------------------------------------------------------------

$('user-name').value ||= `guest-${Math.floor(1000 + Math.random() * 9000)}`;
$('join-form').addEventListener('submit', join);
$('mute').addEventListener('click', toggleMute);
$('camera').addEventListener('click', toggleCamera);
$('share').addEventListener('click', toggleShare);
$('leave').addEventListener('click', () => audioVideo?.stop());
$('chat-form').addEventListener('submit', sendChat);
