// @ts-check
/**
 * Confide web client UI: the start page and the meeting page.
 *
 * Only DOM work lives here. Everything that talks to the server or touches keys
 * is in protocol.js, so this file never sees a secret it does not need. Text that
 * other participants chose (names, chat) always goes in through textContent.
 */

import { createMeeting, parseMeetingLink, MeetingClient } from './protocol.js';
import { avatarColour, byId, el, fillIconPlaceholders, icon, initial, setIcon } from './dom.js';
import { cameraTileHeights, featuredId, fitTiles, galleryPage } from './layout.js';

/** @typedef {{ audio: boolean, camera: boolean, screen: boolean }} Media */

/**
 * One person in the meeting, as the UI keeps them.
 * @typedef {{
 *   id: string,
 *   name: string,
 *   self: boolean,
 *   media: Media,
 *   tile: HTMLDivElement,
 *   video: HTMLVideoElement,
 *   cameraTrack: MediaStreamTrack | null,
 *   audioElement: HTMLAudioElement | null,
 *   screenTile: HTMLDivElement | null,
 *   listItem: HTMLLIElement,
 * }} Participant
 */

const NAME_STORAGE_KEY = 'confide.name';
/** The speaker view keeps a new speaker large at least this long, so it does not flit. */
const SPEAKER_HOLD_MS = 2000;
const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 } };

// ---------------------------------------------------------------------------
// Start page

function initStartPage() {
  fillIconPlaceholders();
  const button = byId('new-meeting');
  const error = byId('start-error');
  button.addEventListener('click', async () => {
    button.setAttribute('disabled', '');
    button.textContent = 'Creating…';
    error.hidden = true;
    try {
      const { meetingId, linkSecret } = await createMeeting();
      location.href = '/m/' + meetingId + '#' + linkSecret;
    } catch (err) {
      console.error('createMeeting failed', err);
      error.textContent = err instanceof Error && err.message === 'too-many-meetings'
        ? 'Too many new meetings from your network just now: wait a minute and try again.'
        : 'Could not reach the server. Check your connection and try again.';
      error.hidden = false;
      button.removeAttribute('disabled');
      button.textContent = 'New meeting';
    }
  });
}

// ---------------------------------------------------------------------------
// Meeting page state

const state = {
  /** The client's last word on encryption, shown again when the connection changes. */
  /** @type {Parameters<typeof renderEncryption>[0] | null} */
  encryption: null,
  /** @type {{ meetingId: string, linkSecret: string } | null} */
  link: null,
  /** @type {MeetingClient | null} */
  client: null,
  /** The client just ended; its fatal error may still arrive to explain why. */
  /** @type {MeetingClient | null} */
  endedClient: null,
  name: '',
  /** @type {MediaStreamTrack | null} */
  micTrack: null,
  /** @type {MediaStreamTrack | null} */
  cameraTrack: null,
  /** @type {MediaStreamTrack | null} */
  screenTrack: null,
  /** Whether the person wants their microphone on (the track stays, only disabled). */
  micOn: true,
  /** Whether the person wants their camera on; used again on rejoin. */
  cameraWanted: true,
  /** @type {Map<string, Participant>} */
  participants: new Map(),
  /** @type {Participant | null} */
  self: null,
  /** @type {'chat' | 'participants' | null} */
  panel: null,
  unread: 0,
  joinedAt: 0,
  /** Set when a fatal error arrives, so a later generic 'failed' does not hide the reason. */
  /** @type {string | null} */
  fatalError: null,
  /** The last non-fatal error code, to explain a reconnect ("Cannot reach the server"). */
  /** @type {string | null} */
  lastErrorCode: null,
  /** The "You're the only one here" card was closed; it stays closed for this page. */
  aloneDismissed: false,
  /** Gallery: everyone alike, in pages. Speaker: one person large, the others in a strip. */
  /** @type {'gallery' | 'speaker'} */
  layout: 'gallery',
  /** Whom the speaker view shows large whatever is said; null to follow the voice. */
  /** @type {string | null} */
  pinned: null,
  /** The last person heard, and since when (the large tile does not flit between voices). */
  /** @type {string | null} */
  speaker: null,
  speakerSince: 0,
  galleryPage: 0,
  /** Settles when the pre-join screen has its camera and microphone (or knows it cannot). */
  /** @type {Promise<void>} */
  mediaReady: Promise.resolve(),
  mediaPending: false,
  cameraBusy: false,
  screenBusy: false,
  /** @type {number | undefined} */
  timer: undefined,
  /** This person's identity fingerprint in this meeting, to compare with others. */
  ownFingerprint: '',
  /** The host muted this person; only the host can lift it. */
  mutedByHost: false,
};

// ---------------------------------------------------------------------------
// Screens

/** @param {'prejoin' | 'meeting' | 'left'} name */
function showScreen(name) {
  for (const id of ['prejoin', 'meeting', 'left']) byId(id).hidden = id !== name;
}

// ---------------------------------------------------------------------------
// Local media

/**
 * @typedef {{
 *   audioTrack: MediaStreamTrack | null,
 *   videoTrack: MediaStreamTrack | null,
 *   audioError: any,
 *   videoError: any,
 * }} LocalMedia
 */

/**
 * Gets what it can of microphone and camera: both, then audio only, then video
 * only, then nothing, so a blocked camera never keeps anyone out of a meeting.
 * @param {boolean} wantAudio
 * @param {boolean} wantVideo
 * @returns {Promise<LocalMedia>}
 */
async function acquireMedia(wantAudio, wantVideo) {
  /** @type {LocalMedia} */
  const result = { audioTrack: null, videoTrack: null, audioError: null, videoError: null };
  const devices = navigator.mediaDevices;
  if (!devices || !devices.getUserMedia) {
    const insecure = { name: 'InsecureContext' };
    if (wantAudio) result.audioError = insecure;
    if (wantVideo) result.videoError = insecure;
    return result;
  }
  /** @param {MediaStreamConstraints} constraints */
  const get = (constraints) => devices.getUserMedia(constraints);

  let bothError = null;
  if (wantAudio && wantVideo) {
    try {
      const stream = await get({ audio: true, video: VIDEO_CONSTRAINTS });
      result.audioTrack = stream.getAudioTracks()[0] || null;
      result.videoTrack = stream.getVideoTracks()[0] || null;
      return result;
    } catch (err) {
      bothError = err;
    }
  }
  if (wantAudio) {
    try {
      result.audioTrack = (await get({ audio: true })).getAudioTracks()[0] || null;
      if (wantVideo) result.videoError = bothError;
      return result;
    } catch (err) {
      result.audioError = err;
    }
  }
  if (wantVideo) {
    try {
      result.videoTrack = (await get({ video: VIDEO_CONSTRAINTS })).getVideoTracks()[0] || null;
    } catch (err) {
      result.videoError = err;
    }
  }
  return result;
}

/**
 * A sentence that says what went wrong with one device and what to do about it.
 * @param {'camera' | 'microphone'} device
 * @param {any} error
 */
function describeDeviceError(device, error) {
  const Device = device === 'camera' ? 'Camera' : 'Microphone';
  const without = device === 'camera' ? 'video' : 'sound';
  switch (error && error.name) {
    case 'NotAllowedError':
    case 'SecurityError':
    case 'PermissionDeniedError':
      return `${Device} blocked: allow it in the browser's site settings, or join without ${without}`;
    case 'NotFoundError':
    case 'OverconstrainedError':
    case 'DevicesNotFoundError':
      return `No ${device} found: you can join without ${without}`;
    case 'NotReadableError':
    case 'AbortError':
    case 'TrackStartError':
      return `${Device} is in use by another app or not working: close that app, or join without ${without}`;
    case 'InsecureContext':
      return `${Device} needs a secure (https) connection: you can join without ${without}`;
    default:
      return `${Device} unavailable: you can join without ${without}`;
  }
}

/**
 * Shows device problems on the pre-join screen (or hides the line if none).
 * @param {any} audioError
 * @param {any} videoError
 */
function showDeviceProblems(audioError, videoError) {
  const message = byId('device-message');
  message.replaceChildren();
  const blocked = (/** @type {any} */ e) => e && (e.name === 'NotAllowedError' || e.name === 'PermissionDeniedError');
  if (blocked(audioError) && blocked(videoError)) {
    message.append(el('span', '', "Camera and microphone blocked: allow them in the browser's site settings, or join without them"));
  } else {
    if (videoError) message.append(el('span', '', describeDeviceError('camera', videoError)));
    if (audioError) message.append(el('span', '', describeDeviceError('microphone', audioError)));
  }
  message.hidden = message.childElementCount === 0;
}

/** @param {MediaStreamTrack | null} track */
function stopTrack(track) {
  if (track) track.stop();
}

function stopLocalMedia() {
  stopTrack(state.micTrack);
  stopTrack(state.cameraTrack);
  stopTrack(state.screenTrack);
  state.micTrack = null;
  state.cameraTrack = null;
  state.screenTrack = null;
}

// ---------------------------------------------------------------------------
// Pre-join screen

/** The meeting id from the path, for display even when the link is incomplete. */
function meetingIdFromPath() {
  const match = location.pathname.match(/\/m\/([^/]+)/);
  return match ? decodeURIComponent(match[1]) : '';
}

async function initPrejoin() {
  const nameInput = /** @type {HTMLInputElement} */ (byId('name'));
  byId('prejoin-meeting-id').textContent = meetingIdFromPath() || 'unknown';
  byId('controlbar-meeting-id').textContent = meetingIdFromPath();

  state.link = parseMeetingLink(location);
  if (!state.link) {
    // Without the secret nobody can join, so do not ask for the camera either.
    byId('prejoin').classList.add('incomplete');
    byId('link-error').hidden = false;
    byId('join-form').hidden = true;
    byId('prejoin-heading').textContent = 'Cannot join this meeting';
    return;
  }

  nameInput.value = readStoredName();
  nameInput.addEventListener('input', () => updatePreviewAvatar());
  updatePreviewAvatar();
  if (!nameInput.value) nameInput.focus();

  byId('preview-mic').addEventListener('click', togglePreviewMic);
  byId('preview-camera').addEventListener('click', togglePreviewCamera);
  byId('join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    joinMeeting();
  });

  // Join stays usable while the browser asks for permission; joinMeeting waits for the answer.
  state.mediaPending = true;
  renderPreview();
  state.mediaReady = acquireMedia(true, true).then((media) => {
    state.mediaPending = false;
    state.micTrack = media.audioTrack;
    state.cameraTrack = media.videoTrack;
    state.cameraWanted = !!media.videoTrack;
    showDeviceProblems(media.audioError, media.videoError);
    renderPreview();
  });
}

function readStoredName() {
  try {
    return localStorage.getItem(NAME_STORAGE_KEY) || '';
  } catch {
    return '';
  }
}

function updatePreviewAvatar() {
  const name = /** @type {HTMLInputElement} */ (byId('name')).value;
  const avatar = byId('preview-avatar');
  avatar.textContent = initial(name || 'You');
  avatar.style.backgroundColor = avatarColour(name || 'you');
}

/** Brings the preview video and its two toggles in line with the local tracks. */
function renderPreview() {
  const video = /** @type {HTMLVideoElement} */ (byId('preview-video'));
  const hasCamera = !!state.cameraTrack;
  video.srcObject = hasCamera ? new MediaStream([/** @type {MediaStreamTrack} */ (state.cameraTrack)]) : null;
  byId('preview-frame').classList.toggle('camera-off', !hasCamera);
  byId('preview-off-text').textContent = state.mediaPending ? 'Starting camera…' : hasCamera ? '' : 'Camera is off';

  const pending = state.mediaPending;
  renderToggle(byId('preview-mic'), {
    on: pending || (!!state.micTrack && state.micOn),
    available: !!state.micTrack,
    onIcon: 'mic', offIcon: 'mic-off',
    onLabel: 'Turn off microphone', offLabel: 'Turn on microphone', unavailableLabel: 'No microphone available',
  });
  renderToggle(byId('preview-camera'), {
    on: pending || hasCamera,
    available: !pending,
    onIcon: 'camera', offIcon: 'camera-off',
    onLabel: 'Turn off camera', offLabel: 'Turn on camera', unavailableLabel: '',
  });
}

/**
 * Sets icon, label, tooltip and pressed state of an on/off device button.
 * aria-pressed="true" means the device is switched off (the button "Mute" is pressed).
 * @param {HTMLElement} button
 * @param {{ on: boolean, available: boolean, onIcon: string, offIcon: string, onLabel: string, offLabel: string, unavailableLabel: string }} options
 */
function renderToggle(button, options) {
  const label = !options.available ? options.unavailableLabel : options.on ? options.onLabel : options.offLabel;
  setIcon(button, options.on ? options.onIcon : options.offIcon);
  button.setAttribute('aria-label', label);
  button.title = label;
  button.setAttribute('aria-pressed', String(!options.on));
  button.dataset.state = options.on ? 'on' : 'off';
  button.classList.toggle('off', !options.on);
  if (options.available) button.removeAttribute('disabled');
  else button.setAttribute('disabled', '');
}

function togglePreviewMic() {
  if (!state.micTrack) return;
  state.micOn = !state.micOn;
  state.micTrack.enabled = state.micOn;
  renderPreview();
}

async function togglePreviewCamera() {
  if (state.cameraBusy) return;
  state.cameraBusy = true;
  try {
    if (state.cameraTrack) {
      // Stopping (not just disabling) the track turns the camera light off.
      stopTrack(state.cameraTrack);
      state.cameraTrack = null;
      state.cameraWanted = false;
    } else {
      const media = await acquireMedia(false, true);
      state.cameraTrack = media.videoTrack;
      state.cameraWanted = !!media.videoTrack;
      showDeviceProblems(null, media.videoError);
    }
    renderPreview();
  } finally {
    state.cameraBusy = false;
  }
}

// ---------------------------------------------------------------------------
// Joining and leaving

async function joinMeeting() {
  if (!state.link) return;
  const nameInput = /** @type {HTMLInputElement} */ (byId('name'));
  const name = nameInput.value.trim();
  if (!name) {
    nameInput.focus();
    return;
  }
  state.name = name;
  try {
    localStorage.setItem(NAME_STORAGE_KEY, name);
  } catch {
    // Private browsing may refuse storage; remembering the name is only a convenience.
  }
  const join = byId('join');
  join.setAttribute('disabled', '');
  join.textContent = 'Joining…';
  try {
    await state.mediaReady;
    /** @type {HTMLVideoElement} */ (byId('preview-video')).srcObject = null;
    await enterMeeting();
  } finally {
    join.removeAttribute('disabled');
    join.textContent = 'Join';
  }
}

/** Starts a fresh MeetingClient with the current local tracks and shows the meeting. */
async function enterMeeting() {
  if (!state.link) return;
  resetMeetingView();
  showScreen('meeting');
  setStatus('connecting');
  ensureAudioContext();

  state.encryption = null;
  const client = new MeetingClient(state.link);
  state.client = client;
  // Reachable from the console for diagnostics, and from the browser tests.
  /** @type {any} */ (window).confideClient = client;
  wireClient(client);

  state.self = addParticipant({ id: 'self', name: state.name, media: localMedia() }, true);
  refreshSelf();
  renderControls();

  try {
    await client.join(state.name, { audioTrack: state.micTrack, videoTrack: state.cameraTrack });
    if (state.client !== client) return;
    syncSelfId();
    if (state.micTrack && !state.micOn) client.setMicrophoneEnabled(false);
  } catch (err) {
    if (state.client !== client) return;
    console.error('join failed', err);
    const code = /** @type {any} */ (err) && /** @type {any} */ (err).code;
    if (!state.fatalError) endMeeting('failed', ERROR_TEXT[code] || 'Could not join the meeting: check your connection and try again');
  }
}

/** @returns {Media} */
function localMedia() {
  return { audio: !!state.micTrack && state.micOn, camera: !!state.cameraTrack, screen: !!state.screenTrack };
}

/**
 * Hooks the client's callbacks to the UI. Each one checks that the client is
 * still current, so a client we have left cannot touch the page any more.
 * @param {MeetingClient} client
 */
function wireClient(client) {
  const live = () => state.client === client;
  client.onstatus = (status, detail) => live() && onStatus(status, detail);
  client.onparticipantjoined = ({ id, name, media }) => {
    if (!live()) return;
    syncSelfId();
    if (id === client.selfId) return;
    addParticipant({ id, name, media }, false);
  };
  client.onparticipantleft = ({ id, reason }) => live() && removeParticipant(id, reason);
  client.onparticipantmedia = ({ id, media }) => live() && updateParticipantMedia(id, media);
  client.onparticipantconnection = ({ id, interrupted, ours }) => {
    const participant = live() ? state.participants.get(id) : undefined;
    if (!participant) return;
    // A network dropped, not a person: the tile stays, marked, until they are back or gone.
    participant.tile.classList.toggle('reconnecting', interrupted);
    participant.listItem.classList.toggle('reconnecting', interrupted);
    if (!ours) announce(`${participant.name} ${interrupted ? 'is reconnecting' : 'is back'}`);
  };
  client.ontrack = ({ participantId, kind, track }) => live() && attachRemoteTrack(participantId, kind, track);
  client.ontrackended = ({ participantId, kind }) => live() && detachRemoteTrack(participantId, kind);
  client.onchat = (message) => live() && addChatMessage(message);
  // The reason for a fatal error may arrive just after the 'failed' status, so it is still let in.
  client.onerror = (error) => (live() || state.endedClient === client) && onClientError(error);
  client.onsecuritycode = (code) => live() && renderSecurityCode(client, code);
  client.onlobby = ({ position, hostHere }) => {
    if (!live()) return;
    byId('lobby-position').textContent = hostHere
      ? `You are number ${position} in line.` : 'The host is not here yet: you will get in once they are.';
  };
  client.onknock = ({ id, name, verified }) => live() && addKnock(client, id, name, verified);
  client.onknockgone = ({ id }) => live() && removeKnock(id);
  client.onhostaction = (action) => live() && onHostAction(client, action);
  client.onpolicy = () => live() && renderHostControls(client);
  client.onlinkchanged = (link) => {
    if (!live()) return;
    // The address bar now holds the new link; the old one no longer lets anyone in.
    history.replaceState(null, '', link);
    state.link = parseMeetingLink(location);
    showToast('The meeting link changed: share the new one, the old link no longer works', 6000);
  };
  client.onencryption = (status) => {
    if (!live()) return;
    state.encryption = status;
    renderEncryption(status);
  };
  client.onsecurityalert = (alert) => live() && showSecurityAlert(alert);
}

// ---------------------------------------------------------------------------
// Host powers: lobby, moderation, the meeting's policy

/** @param {MeetingClient} client @param {string} id @param {string} name @param {boolean} verified */
function addKnock(client, id, name, verified) {
  removeKnock(id);
  const item = el('li', verified ? 'knock' : 'knock unverified');
  item.dataset.lobbyId = id;
  const admit = el('button', 'small-button admit', 'Admit');
  const deny = el('button', 'small-button deny', 'Deny');
  admit.type = deny.type = 'button';
  admit.addEventListener('click', () => client.admit(id));
  deny.addEventListener('click', () => client.deny(id));
  item.append(el('span', 'lobby-name', verified ? name : `${name} (keys not verified)`), admit, deny);
  byId('lobby-list').append(item);
  byId('lobby-box').hidden = false;
  renderKnockBadge();
  showToast(`${name} is waiting to join: open People to admit them`, 5000);
}

/** @param {string} id */
function removeKnock(id) {
  const knock = document.querySelector(`#lobby-list li[data-lobby-id="${CSS.escape(id)}"]`);
  const name = knock?.querySelector('.lobby-name')?.textContent ?? '';
  // A stale "is waiting" notice would invite a click on a knock that is gone.
  if (name && byId('toast').textContent?.startsWith(name)) byId('toast').hidden = true;
  knock?.remove();
  byId('lobby-box').hidden = !byId('lobby-list').children.length;
  renderKnockBadge();
}

/** The People button stays marked while anyone waits, so a host cannot miss a knock. */
function renderKnockBadge() {
  const waiting = byId('lobby-list').children.length;
  const button = byId('toggle-participants');
  button.classList.toggle('knocking', waiting > 0);
  button.title = waiting ? `Participants: ${waiting} waiting to join` : 'Participants';
}

const ACTION_TEXT = /** @type {Record<string, string>} */ ({
  lock: 'locked the meeting', unlock: 'unlocked the meeting', end: 'ended the meeting',
  permissions: 'changed what people may do', lobby: 'changed the lobby',
});

/** @param {MeetingClient} client @param {{kind: string, target: string | null, by: string}} action */
function onHostAction(client, { kind, target, by }) {
  const self = target !== null && target === client.selfId;
  const targetName = self ? 'you' : (target && state.participants.get(target)?.name) || 'someone';
  const text = {
    mute: `${by} muted ${targetName}`, 'stop-camera': `${by} stopped ${targetName === 'you' ? 'your' : `${targetName}'s`} camera`,
    'stop-screen': `${by} stopped ${targetName === 'you' ? 'your' : `${targetName}'s`} screen share`,
    'allow-unmute': `${by} let ${targetName} unmute`, remove: `${by} removed ${targetName}`,
    cohost: `${by} made ${targetName} a co-host`, 'revoke-cohost': `${by} took co-host from ${targetName}`,
    admit: '', deny: '',
  }[kind] ?? `${by} ${ACTION_TEXT[kind] ?? kind}`;
  if (text) showToast(text, 4000);
  if (self && kind === 'mute') { state.micOn = false; state.mutedByHost = true; renderControls(); refreshSelf(); }
  if (self && kind === 'allow-unmute') state.mutedByHost = false;
  if (self && kind === 'stop-camera' && state.cameraTrack) toggleCamera();
  if (self && kind === 'stop-screen') { state.screenTrack = null; renderControls(); }
  for (const participant of state.participants.values()) renderParticipant(participant);
}

/** @param {MeetingClient} client */
function renderHostControls(client) {
  const policy = client.policy;
  byId('host-controls').hidden = !client.canModerate;
  /** @type {HTMLInputElement} */ (byId('lock-meeting')).checked = policy.locked;
  /** @type {HTMLInputElement} */ (byId('allow-screen')).checked = policy.screen_share === 'everyone';
  /** @type {HTMLInputElement} */ (byId('allow-chat')).checked = policy.chat;
  byId('copy-host-link').hidden = !client.hostLink();
  byId('locked-indicator').hidden = !policy.locked;
  const screenButton = /** @type {HTMLButtonElement} */ (byId('toggle-screen'));
  screenButton.disabled = !client.canShareScreen && !state.screenTrack;
  screenButton.title = client.canShareScreen ? 'Share screen' : 'Only the host can share a screen';
  for (const participant of state.participants.values()) renderParticipant(participant);
}

function initHostControls() {
  const client = () => /** @type {MeetingClient} */ (state.client);
  byId('lock-meeting').addEventListener('change', (event) =>
    client().setLocked(/** @type {HTMLInputElement} */ (event.target).checked));
  byId('allow-screen').addEventListener('change', (event) => client().setPermissions(
    { screen: /** @type {HTMLInputElement} */ (event.target).checked ? 'everyone' : 'host' }));
  byId('allow-chat').addEventListener('change', (event) => client().setPermissions(
    { chat: /** @type {HTMLInputElement} */ (event.target).checked }));
  byId('copy-host-link').addEventListener('click', async () => {
    const link = client().hostLink();
    if (!link) return;
    try { await navigator.clipboard.writeText(link); showToast('Host link copied: it gives the host role, keep it private'); }
    catch { showLinkDialog(link); }
  });
  byId('end-meeting').addEventListener('click', () => {
    if (window.confirm('End the meeting for everyone?')) client().endMeeting();
  });
}

/**
 * The host's buttons beside each participant in the list.
 * @param {Participant} participant
 */
function renderHostActions(participant) {
  const client = state.client;
  let actions = /** @type {HTMLElement | null} */ (participant.listItem.querySelector('.participant-host-actions'));
  const show = Boolean(client?.canModerate) && !participant.self;
  if (!show) { actions?.remove(); return; }
  if (!actions) {
    actions = el('div', 'participant-host-actions');
    const buttons = /** @type {Array<[string, string, (id: string) => unknown]>} */ ([
      ['host-mute', 'Mute', (id) => client?.mute(id)],
      ['host-stop-camera', 'Stop video', (id) => client?.stopCamera(id)],
      ['host-allow', 'Allow unmute', (id) => client?.allowUnmute(id)],
      ['host-remove', 'Remove', (id) => client?.remove(id)],
      ['host-remove-block', 'Remove and block', (id) => client?.removeAndBlock(id)],
      ['host-remove-rekey', 'Remove and change link', (id) => client?.removeAndRekey(id)],
      ['host-cohost', 'Make co-host', (id) => client?.makeCohost(id)],
    ]);
    for (const [className, label, act] of buttons) {
      const button = el('button', `small-button ${className}`, label);
      button.type = 'button';
      button.addEventListener('click', () => act(participant.id));
      actions.append(button);
    }
    participant.listItem.append(actions);
  }
}

// ---------------------------------------------------------------------------
// End-to-end encryption, as the person sees it

/**
 * The chip says "End-to-end encrypted" only while every received stream decrypts
 * and every sent frame is encrypted; the worker drops a frame rather than send it clear.
 * Until a stream's first frame has decrypted, it says whose media it waits for.
 * @param {{endToEnd: boolean, failing: string[], waiting: string[], unverified: string[], sent: number, dropped: number}} status
 */
function renderEncryption({ endToEnd, failing, waiting, unverified }) {
  // Someone can turn unverified after they appeared (no proof of being here): mark them.
  for (const id of unverified) {
    const participant = state.participants.get(id);
    if (participant) renderParticipant(participant);
  }
  const chip = byId('encryption');
  const text = byId('encryption-text');
  const code = state.client?.securityCode ?? '';
  const nameOf = (/** @type {string} */ id) => state.participants.get(id)?.name ?? 'someone';
  const names = failing.map(nameOf);
  // Disconnected, nothing is sent or received: too little to call anything encrypted.
  const connected = byId('status').dataset.status === 'connected';
  const stateName = failing.length || unverified.length ? 'failing'
    : endToEnd && connected ? 'e2ee' : 'pending';
  chip.dataset.state = stateName;
  chip.classList.toggle('pending', stateName === 'pending');
  chip.classList.toggle('failing', stateName === 'failing');
  if (stateName === 'e2ee') {
    text.textContent = `End-to-end encrypted · ${code}`;
    chip.title = `Every sent and received track is encrypted with keys the server never has. Security code ${code}: compare it aloud`;
  } else if (unverified.length) {
    text.textContent = `Keys not verified for ${unverified.length} ${unverified.length === 1 ? 'person' : 'people'}: possible attack`;
    chip.title = 'Someone’s keys failed verification; nothing is shared with them';
  } else if (stateName === 'failing') {
    text.textContent = `Cannot decrypt ${names.join(', ')}`;
    chip.title = 'Frames from these people fail to decrypt and are not shown';
  } else if (!connected) {
    text.textContent = 'Not connected: nothing is sent or received';
    chip.title = 'Encryption resumes with the connection';
  } else if (waiting.length) {
    text.textContent = `Waiting for media from ${[...new Set(waiting.map(nameOf))].join(', ')}`;
    chip.title = 'Nothing has arrived from them yet to decrypt';
  } else {
    text.textContent = 'Setting up encryption…';
    chip.title = 'Exchanging keys';
  }
  for (const participant of state.participants.values()) {
    participant.tile.classList.toggle('undecryptable', failing.includes(participant.id));
  }
}

/** @param {MeetingClient} client @param {string} code */
function renderSecurityCode(client, code) {
  byId('security-code').textContent = code;
  client.ownFingerprint().then((own) => { state.ownFingerprint = own; if (state.self) renderParticipant(state.self); });
  for (const participant of state.participants.values()) renderParticipant(participant);
}

/** @param {{participantId: string | null, message: string}} alert */
function showSecurityAlert({ message }) {
  console.warn(`confide: possible attack: ${message}`);
  const box = byId('security-alert');
  box.textContent = message;
  box.hidden = false;
  window.setTimeout(() => { box.hidden = true; }, 15000);
}

/** The self tile starts with a placeholder id; swap in the real one once the server has assigned it. */
function syncSelfId() {
  const client = state.client;
  const self = state.self;
  if (!client || !self) return;
  let selfId = '';
  try {
    selfId = client.selfId;
  } catch {
    return;
  }
  if (!selfId || self.id === selfId) return;
  state.participants.delete(self.id);
  self.id = selfId;
  state.participants.set(selfId, self);
  self.tile.dataset.participantId = selfId;
  self.listItem.dataset.participantId = selfId;
  if (self.screenTile) self.screenTile.dataset.participantId = selfId;
}

function leaveMeeting() {
  const client = state.client;
  state.client = null;
  if (client) {
    try {
      client.leave();
    } catch (err) {
      console.warn('leave failed', err);
    }
  }
  teardownMeeting();
  showLeftScreen('You left the meeting', '');
  setStatus('ended', 'You left');
  byId('status').hidden = true;
}

/**
 * The meeting is over for us because of the server or an error.
 * @param {'ended' | 'failed'} status
 * @param {string} detail
 */
function endMeeting(status, detail) {
  const client = state.client;
  state.client = null;
  state.endedClient = client;
  if (client) {
    try {
      client.leave();
    } catch {
      // Already closed; nothing to clean up on the server side.
    }
  }
  teardownMeeting();
  if (status === 'ended') {
    setStatus('ended');
    showLeftScreen('The meeting has ended', detail && detail !== STATUS_TEXT.ended ? detail : '');
  } else {
    setStatus('failed', detail);
    showLeftScreen(state.joinedAt ? 'You were disconnected' : 'Could not join the meeting', detail);
  }
}

/** Stops media and clears everything that belonged to the meeting just left. */
function teardownMeeting() {
  // Remember whether the camera was on so Rejoin restores the same state.
  state.cameraWanted = !!state.cameraTrack;
  stopLocalMedia();
  stopLevelMonitoring();
  window.clearInterval(state.timer);
  state.timer = undefined;
  // Nothing of the meeting should keep playing behind the end screen.
  byId('audio-sink').replaceChildren();
  byId('meeting').querySelectorAll('video').forEach((video) => { video.srcObject = null; });
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  const dialog = /** @type {HTMLDialogElement} */ (byId('link-dialog'));
  if (dialog.open) dialog.close();
}

/**
 * @param {string} heading
 * @param {string} detail
 */
function showLeftScreen(heading, detail) {
  byId('left-heading').textContent = heading;
  const detailElement = byId('left-detail');
  detailElement.textContent = detail;
  detailElement.hidden = !detail;
  byId('rejoin').textContent = state.fatalError ? 'Try again' : 'Rejoin';
  showScreen('left');
  document.title = 'Confide meeting';
}

async function rejoin() {
  const button = byId('rejoin');
  button.setAttribute('disabled', '');
  try {
    state.fatalError = null;
    state.lastErrorCode = null;
    const media = await acquireMedia(true, state.cameraWanted);
    state.micTrack = media.audioTrack;
    state.cameraTrack = media.videoTrack;
    if (state.micTrack) state.micTrack.enabled = state.micOn;
    if (media.audioError || media.videoError) {
      const problems = [];
      if (media.videoError) problems.push(describeDeviceError('camera', media.videoError));
      if (media.audioError) problems.push(describeDeviceError('microphone', media.audioError));
      showToast(problems.join('. '), 6000);
    }
    await enterMeeting();
  } finally {
    button.removeAttribute('disabled');
  }
}

/** Empties tiles, lists and chat so a rejoin starts clean. */
function resetMeetingView() {
  state.participants.clear();
  state.self = null;
  state.unread = 0;
  state.joinedAt = 0;
  state.fatalError = null;
  state.lastErrorCode = null;
  state.endedClient = null;
  delete byId('status').dataset.error;
  byId('grid').replaceChildren();
  byId('featured').replaceChildren();
  byId('screens').replaceChildren();
  state.pinned = null;
  state.speaker = null;
  state.galleryPage = 0;
  byId('participant-list').replaceChildren();
  byId('audio-sink').replaceChildren();
  const messages = byId('chat-messages');
  messages.replaceChildren(byId('chat-empty'));
  byId('chat-empty').hidden = false;
  byId('meeting-timer').textContent = '0:00';
  byId('status').hidden = false;
  renderUnread();
  layoutStage();
}

// ---------------------------------------------------------------------------
// Status

const STATUS_TEXT = /** @type {Record<string, string>} */ ({
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  lobby: 'waiting for the host…',
  ended: 'meeting ended',
  failed: 'connection failed',
});

const ERROR_TEXT = /** @type {Record<string, string>} */ ({
  'meeting-not-found': 'This meeting does not exist or has expired',
  'bad-token': 'The link is not valid for this meeting: ask for the full link',
  'server-unreachable': 'Cannot reach the server: retrying…',
  'meeting-full': 'This meeting is full: try again later',
  'unsupported-version': 'This page is out of date: reload it and join again',
  denied: 'The host did not let you in',
  removed: 'The host removed you from the meeting',
  'denied-unsigned': 'The server turned you away (the host did not sign this)',
  'removed-unsigned': 'The server disconnected you (the host did not sign this)',
  'meeting-locked': 'The meeting is locked: nobody new can come in',
  'meeting-ended': 'This meeting has ended',
  'rate-limited': 'Too many attempts: wait a minute and try again',
  'screen-share-not-allowed': 'Only the host can share a screen in this meeting',
  'chat-off': 'The host turned chat off',
});

/**
 * @param {string} status one of STATUS_TEXT's keys
 * @param {string} [text] overrides the default wording
 */
function setStatus(status, text) {
  const element = byId('status');
  element.dataset.status = status;
  element.textContent = text || STATUS_TEXT[status] || status;
}

/**
 * @param {string} status
 * @param {string} [detail]
 */
function onStatus(status, detail) {
  syncSelfId();
  byId('lobby-card').hidden = status !== 'lobby';
  renderStatus(status, detail);
  // The chip says what is true now: while not connected, that nothing is protected.
  if (state.encryption || status !== 'connected') {
    renderEncryption(state.encryption ?? { endToEnd: false, failing: [], waiting: [], unverified: [] });
  }
}

/**
 * @param {string} status
 * @param {string} [detail]
 */
function renderStatus(status, detail) {
  if (status === 'connected') {
    // Back after an outage: say so, once.
    if (byId('status').dataset.status === 'reconnecting') showToast('Back in the meeting', 3000);
    state.lastErrorCode = null;
    setStatus('connected');
    startMeetingTimer();
  } else if (status === 'lobby') {
    setStatus('lobby', detail);
  } else if (status === 'reconnecting' || status === 'connecting') {
    setStatus(status, state.lastErrorCode === 'server-unreachable' ? ERROR_TEXT['server-unreachable'] : detail);
  } else if (status === 'ended') {
    endMeeting('ended', detail || '');
  } else if (status === 'failed') {
    endMeeting('failed', state.fatalError || detail || 'The connection failed: check your network and rejoin');
  }
}

/** @param {{ code: string, message: string, fatal: boolean }} error */
function onClientError({ code, message, fatal }) {
  // Text of the server's own is shown as the server's.
  const text = ERROR_TEXT[code] || (message ? `The server says: ${message}` : 'Something went wrong');
  if (fatal) {
    state.fatalError = text;
    if (state.client) {
      endMeeting('failed', text);
    } else {
      // The meeting already ended on the 'failed' status; give the precise reason now.
      setStatus('failed', text);
      showLeftScreen(state.joinedAt ? 'You were disconnected' : 'Could not join the meeting', text);
    }
    byId('status').dataset.error = code;
    return;
  }
  state.lastErrorCode = code;
  if (code === 'server-unreachable') {
    setStatus('reconnecting', text);
  } else if (code === 'screen-share-not-allowed' || code === 'chat-off') {
    showToast(text, 4000);
  } else {
    console.warn('server refused a message', code, message);
  }
}

function startMeetingTimer() {
  if (state.joinedAt) return;
  state.joinedAt = Date.now();
  renderParticipantCount();
  const timer = byId('meeting-timer');
  const tick = () => {
    const seconds = Math.floor((Date.now() - state.joinedAt) / 1000);
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, '0');
    timer.textContent = h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  };
  tick();
  state.timer = window.setInterval(tick, 1000);
}

// ---------------------------------------------------------------------------
// Participants and tiles

/**
 * Adds a person (or updates them if a reconnect announces them again).
 * @param {{ id: string, name: string, media: Media }} info
 * @param {boolean} self
 * @returns {Participant}
 */
function addParticipant({ id, name, media }, self) {
  const existing = state.participants.get(id);
  if (existing) {
    existing.name = name || existing.name;
    existing.media = { ...media };
    renderParticipant(existing);
    return existing;
  }
  const { tile, video } = createTile(id, self);
  /** @type {Participant} */
  const participant = {
    id, name: name || 'Guest', self, media: { ...media },
    tile, video, cameraTrack: null, audioElement: null, screenTile: null,
    listItem: createListItem(id, self),
  };
  state.participants.set(id, participant);

  const grid = byId('grid');
  if (self) grid.prepend(tile);
  else grid.append(tile);
  const list = byId('participant-list');
  if (self) list.prepend(participant.listItem);
  else list.append(participant.listItem);

  renderParticipant(participant);
  renderParticipantCount();
  arrangeTiles();
  if (!self) announce(`${participant.name} joined`);
  return participant;
}

/**
 * Placeholder for someone whose track arrived before their join notice.
 * @param {string} id
 */
function ensureParticipant(id) {
  return state.participants.get(id) || addParticipant({ id, name: '', media: { audio: true, camera: true, screen: false } }, false);
}

/** @param {string} id */
/** @param {string} id @param {string} [reason] why they went, as the server or the client says */
function removeParticipant(id, reason = 'left') {
  const participant = state.participants.get(id);
  if (!participant || participant.self) return;
  state.participants.delete(id);
  participant.tile.remove();
  participant.listItem.remove();
  participant.screenTile?.remove();
  participant.audioElement?.remove();
  stopMonitoringLevel(id);
  renderParticipantCount();
  arrangeTiles();
  // Our own connection dropping is said by the status, not as people leaving.
  if (reason !== 'connection-lost') announce(`${participant.name} ${reason === 'removed' ? 'was removed' : 'left'}`);
}

/**
 * @param {string} id
 * @param {Media} media
 */
function updateParticipantMedia(id, media) {
  const participant = state.participants.get(id);
  if (!participant || participant.self) return;
  participant.media = { ...media };
  renderParticipant(participant);
}

/**
 * @param {string} id
 * @param {boolean} self
 */
function createTile(id, self) {
  const tile = el('div', self ? 'tile self' : 'tile');
  tile.dataset.participantId = id;

  const video = el('video');
  video.autoplay = true;
  video.muted = true; // sound comes through separate <audio> elements
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  if (!self) video.dataset.kind = 'camera';

  const avatarWrap = el('div', 'avatar-wrap');
  avatarWrap.append(el('span', 'avatar'));

  const muted = el('span', 'muted-indicator');
  muted.title = 'Muted';
  muted.setAttribute('aria-label', 'Microphone muted');
  muted.setAttribute('role', 'img');
  muted.append(icon('mic-off'));

  const label = el('div', 'tile-label');
  label.append(el('span', 'name'));

  const warning = el('div', 'tile-warning', "Can't decrypt this person's video: not shown");
  const reconnecting = el('div', 'tile-reconnecting', 'Reconnecting…');
  reconnecting.setAttribute('role', 'status');

  tile.append(video, avatarWrap, muted, label, warning, reconnecting);
  if (!self) {
    const pin = el('button', 'tile-pin');
    pin.type = 'button';
    setIcon(pin, 'pin');
    pin.addEventListener('click', () => togglePin(id));
    tile.append(pin);
  }
  tile.addEventListener('dblclick', () => toggleFullscreen(tile));
  return { tile, video };
}

/**
 * @param {string} id
 * @param {boolean} self
 */
function createListItem(id, self) {
  const item = el('li', self ? 'participant self' : 'participant');
  item.dataset.participantId = id;
  const status = el('span', 'participant-media');
  const mic = el('span', 'participant-mic');
  const camera = el('span', 'participant-camera');
  status.append(mic, camera);
  const nameLine = el('span', 'participant-name');
  nameLine.append(el('span', 'participant-name-text'));
  if (self) nameLine.append(el('span', 'participant-you', ' (you)'));
  nameLine.append(el('span', 'participant-fingerprint'));
  item.append(el('span', 'avatar avatar-small'), nameLine, status);
  return item;
}

/**
 * Brings a person's tile and list entry in line with their name, media and tracks.
 * @param {Participant} participant
 */
function renderParticipant(participant) {
  const { tile, video, media, listItem } = participant;
  const track = participant.cameraTrack;
  const showVideo = media.camera && !!track && track.readyState === 'live' && !track.muted;
  const label = participant.self ? `${state.name || 'You'} (you)` : participant.name;

  tile.dataset.audio = media.audio ? 'on' : 'off';
  tile.dataset.camera = showVideo ? 'on' : 'off';
  tile.classList.toggle('audio-muted', !media.audio);
  tile.classList.toggle('camera-off', !showVideo);
  tile.setAttribute('aria-label', label);
  /** @type {HTMLElement} */ (tile.querySelector('.name')).textContent = label;
  const pin = tile.querySelector('.tile-pin');
  if (pin) {
    const pinned = state.pinned === participant.id;
    pin.setAttribute('aria-label', pinned ? `Unpin ${participant.name}` : `Pin ${participant.name}`);
    pin.setAttribute('title', pinned ? 'Unpin' : 'Pin: keep them large');
    pin.setAttribute('aria-pressed', String(pinned));
  }

  const avatar = /** @type {HTMLElement} */ (tile.querySelector('.avatar'));
  avatar.textContent = initial(participant.self ? state.name : participant.name);
  avatar.style.backgroundColor = avatarColour(participant.self ? state.name : participant.id);

  const stream = video.srcObject instanceof MediaStream ? video.srcObject : null;
  if (track && (!stream || stream.getVideoTracks()[0] !== track)) video.srcObject = new MediaStream([track]);
  if (!track && video.srcObject) video.srcObject = null;

  const listAvatar = /** @type {HTMLElement} */ (listItem.querySelector('.avatar'));
  listAvatar.textContent = avatar.textContent;
  listAvatar.style.backgroundColor = avatar.style.backgroundColor;
  /** @type {HTMLElement} */ (listItem.querySelector('.participant-name-text')).textContent =
    participant.self ? state.name : participant.name;
  const fingerprint = participant.self
    ? state.ownFingerprint
    : state.client?.participants.get(participant.id)?.fingerprint ?? '';
  const fingerprintLine = /** @type {HTMLElement} */ (listItem.querySelector('.participant-fingerprint'));
  const failedLiveness = Boolean(state.client?.participants.get(participant.id)?.liveFailed);
  fingerprintLine.textContent = (!failedLiveness && fingerprint) || 'Not verified';
  fingerprintLine.title = fingerprint ? 'Fingerprint: compare it with what this person sees for themselves' : '';
  renderHostActions(participant);
  // Someone whose keys failed verification is marked; nothing is shared with them.
  const person = state.client?.participants.get(participant.id);
  const verified = participant.self || Boolean(person?.peer && !person.liveFailed);
  listItem.classList.toggle('unverified', !verified);
  listItem.dataset.audio = media.audio ? 'on' : 'off';
  listItem.dataset.camera = media.camera ? 'on' : 'off';
  const mic = /** @type {HTMLElement} */ (listItem.querySelector('.participant-mic'));
  setIcon(mic, media.audio ? 'mic' : 'mic-off');
  mic.title = media.audio ? 'Microphone on' : 'Muted';
  mic.setAttribute('aria-label', mic.title);
  mic.setAttribute('role', 'img');
  const camera = /** @type {HTMLElement} */ (listItem.querySelector('.participant-camera'));
  setIcon(camera, media.camera ? 'camera' : 'camera-off');
  camera.title = media.camera ? 'Camera on' : 'Camera off';
  camera.setAttribute('aria-label', camera.title);
  camera.setAttribute('role', 'img');

  if (participant.screenTile) {
    /** @type {HTMLElement} */ (participant.screenTile.querySelector('.name')).textContent =
      participant.self ? 'Your screen' : `${participant.name}'s screen`;
  }
}

/** Updates the self tile from the local tracks. */
function refreshSelf() {
  const self = state.self;
  if (!self) return;
  self.cameraTrack = state.cameraTrack;
  self.media = localMedia();
  renderParticipant(self);
  if (state.micTrack && state.micOn) monitorLevel('self', state.micTrack);
  else stopMonitoringLevel('self');
}

/**
 * @param {string} participantId
 * @param {string} kind 'audio', 'camera' or 'screen'
 * @param {MediaStreamTrack} track
 */
function attachRemoteTrack(participantId, kind, track) {
  const participant = ensureParticipant(participantId);
  if (kind === 'audio') {
    participant.audioElement?.remove();
    const audio = el('audio');
    audio.autoplay = true;
    audio.dataset.participantId = participantId;
    audio.dataset.kind = 'audio';
    audio.srcObject = new MediaStream([track]);
    byId('audio-sink').append(audio);
    participant.audioElement = audio;
    audio.play().catch(() => offerToEnableSound());
    monitorLevel(participantId, track);
  } else if (kind === 'camera') {
    participant.cameraTrack = track;
    // A track with no frames coming (sender paused, network) shows the avatar instead of a frozen picture.
    track.addEventListener('mute', () => renderParticipant(participant));
    track.addEventListener('unmute', () => renderParticipant(participant));
    renderParticipant(participant);
  } else if (kind === 'screen') {
    showScreenTile(participant, track);
  }
}

/**
 * @param {string} participantId
 * @param {string} kind 'audio', 'camera' or 'screen'
 */
function detachRemoteTrack(participantId, kind) {
  const participant = state.participants.get(participantId);
  if (!participant) return;
  if (kind === 'audio') {
    participant.audioElement?.remove();
    participant.audioElement = null;
    stopMonitoringLevel(participantId);
  } else if (kind === 'camera') {
    participant.cameraTrack = null;
    renderParticipant(participant);
  } else if (kind === 'screen') {
    removeScreenTile(participant);
  }
}

/**
 * A screen share gets its own, larger tile, shown above the camera tiles.
 * @param {Participant} participant
 * @param {MediaStreamTrack} track
 */
function showScreenTile(participant, track) {
  removeScreenTile(participant);
  const tile = el('div', participant.self ? 'tile screen self' : 'tile screen');
  tile.dataset.participantId = participant.id;
  tile.dataset.kind = 'screen';
  const video = el('video');
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  video.setAttribute('playsinline', '');
  video.dataset.kind = 'screen';
  video.srcObject = new MediaStream([track]);
  const label = el('div', 'tile-label');
  label.append(icon('screen'), el('span', 'name'));
  tile.append(video, label);
  tile.addEventListener('dblclick', () => toggleFullscreen(tile));
  participant.screenTile = tile;
  byId('screens').append(tile);
  renderParticipant(participant);
  arrangeTiles();
}

/** @param {Participant} participant */
function removeScreenTile(participant) {
  if (!participant.screenTile) return;
  participant.screenTile.remove();
  participant.screenTile = null;
  arrangeTiles();
}

function renderParticipantCount() {
  const count = String(state.participants.size);
  // Only once connected: before that, the others may simply not have been announced yet.
  byId('alone-hint').hidden = state.participants.size !== 1 || !state.client || !state.joinedAt || state.aloneDismissed;
  byId('participant-count').textContent = count;
  byId('participant-count-tab').textContent = count;
  document.title = state.participants.size > 1 ? `Confide meeting (${count})` : 'Confide meeting';
}

/** @param {HTMLElement} tile */
function toggleFullscreen(tile) {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else if (tile.requestFullscreen) tile.requestFullscreen().catch(() => {});
}

// ---------------------------------------------------------------------------
// Layout: fit the tiles to the space they have

/**
 * Puts each tile where the layout wants it: in the speaker view, the featured person
 * in the stage and everyone else in the strip; in the gallery, the current page of
 * tiles. Tiles out of sight get no video from the SFU (reportView).
 */
function arrangeTiles() {
  const grid = byId('grid');
  const featured = byId('featured');
  const others = [...state.participants.values()].filter((participant) => !participant.self);
  const speakerView = state.layout === 'speaker' && byId('screens').childElementCount === 0;
  const star = speakerView
    ? featuredId(state.pinned, state.speaker, others.map((participant) => participant.id)) : null;
  for (const tile of [...featured.children]) {
    if (/** @type {HTMLElement} */ (tile).dataset.participantId !== star) putBack(/** @type {HTMLElement} */ (tile));
  }
  const starTile = star ? state.participants.get(star)?.tile : null;
  if (starTile && starTile.parentElement !== featured) moveTile(starTile, featured);
  const inGrid = /** @type {HTMLElement[]} */ ([...grid.children]);
  // The speaker view's strip holds everyone; those scrolled out of it get no video.
  const page = galleryPage(inGrid.length, speakerView ? 0 : state.galleryPage,
    speakerView ? Math.max(1, inGrid.length) : undefined);
  state.galleryPage = page.page;
  inGrid.forEach((tile, index) => { tile.hidden = index < page.first || index >= page.end; });
  const pages = byId('gallery-pages');
  pages.hidden = page.pages < 2;
  byId('gallery-page-text').textContent = `Page ${page.page + 1} of ${page.pages}`;
  /** @type {HTMLButtonElement} */ (byId('gallery-prev')).disabled = page.page === 0;
  /** @type {HTMLButtonElement} */ (byId('gallery-next')).disabled = page.page === page.pages - 1;
  renderViewToggle();
  layoutStage();
}

/** A tile from the stage back to its place in the grid, in the order people came. @param {HTMLElement} tile */
function putBack(tile) {
  const order = [...state.participants.keys()];
  const position = order.indexOf(tile.dataset.participantId ?? '');
  const next = [...byId('grid').children].find((other) =>
    order.indexOf(/** @type {HTMLElement} */ (other).dataset.participantId ?? '') > position);
  moveTile(tile, byId('grid'), next ?? null);
}

/**
 * Moving a video element pauses it: play it again where it lands.
 * @param {HTMLElement} tile @param {HTMLElement} into @param {Element | null} [before]
 */
function moveTile(tile, into, before = null) {
  into.insertBefore(tile, before);
  tile.querySelectorAll('video').forEach((video) => video.play().catch(() => {}));
}

function renderViewToggle() {
  const button = byId('toggle-view');
  const speaker = state.layout === 'speaker';
  setIcon(button, speaker ? 'gallery' : 'speaker-view');
  button.setAttribute('aria-pressed', String(speaker));
  const label = speaker ? 'Show everyone alike (gallery)' : 'Show the speaker large';
  button.setAttribute('aria-label', label);
  button.title = label;
}

function toggleLayout() {
  state.layout = state.layout === 'speaker' ? 'gallery' : 'speaker';
  arrangeTiles();
}

/** Pinning someone shows them large in the speaker view until unpinned. @param {string} id */
function togglePin(id) {
  const before = state.pinned;
  state.pinned = before === id ? null : id;
  if (state.pinned) state.layout = 'speaker';
  for (const changed of [before, id]) {
    const participant = changed ? state.participants.get(changed) : undefined;
    if (participant) renderParticipant(participant);
  }
  arrangeTiles();
  const name = state.participants.get(id)?.name ?? 'someone';
  announce(state.pinned ? `${name} pinned` : `${name} unpinned`);
}

/** @param {number} step */
function turnGalleryPage(step) {
  state.galleryPage += step;
  arrangeTiles();
}

/** Tells the SFU how tall each camera tile is on screen, to pick each camera's layer. */
function reportView() {
  const client = state.client;
  if (!client) return;
  const others = [...state.participants.values()].filter((participant) => !participant.self);
  client.setView(cameraTileHeights(others, window.devicePixelRatio));
}

function layoutStage() {
  const stage = byId('stage');
  const screens = byId('screens');
  const grid = byId('grid');
  // A shared screen, or the speaker view's one person, takes the stage; the rest is a strip.
  const presenting = screens.childElementCount > 0 || byId('featured').childElementCount > 0;
  stage.classList.toggle('presenting', presenting);
  fitTiles(screens, 0);
  fitTiles(byId('featured'), 0);
  if (presenting && getComputedStyle(stage).flexDirection === 'column') {
    // Phones: the cameras become one row under the screen, scrolled sideways.
    const tileWidth = Math.floor(grid.clientHeight * (16 / 9));
    grid.style.setProperty('--cols', String(grid.childElementCount));
    grid.style.setProperty('--tile-width', `${tileWidth}px`);
  } else {
    fitTiles(grid, presenting ? 120 : 160);
  }
  reportView();
}

// ---------------------------------------------------------------------------
// Who is speaking: a light outline on the tile of anyone making sound

/** @type {AudioContext | null} */
let audioContext = null;
/**
 * Level monitors, keyed by participant id ('self' for our own microphone).
 * @type {Map<string, { source: MediaStreamAudioSourceNode, analyser: AnalyserNode, level: number }>}
 */
const levelMonitors = new Map();
/** @type {number | undefined} */
let levelTimer;

function ensureAudioContext() {
  // Created from the Join click, so the browser's autoplay rules allow it to run.
  if (audioContext || typeof AudioContext === 'undefined') return;
  try {
    audioContext = new AudioContext();
  } catch {
    audioContext = null;
  }
}

/** @param {string} key */
function participantForMonitor(key) {
  return key === 'self' ? state.self : state.participants.get(key);
}

/**
 * @param {string} key participant id, or 'self'
 * @param {MediaStreamTrack} track
 */
function monitorLevel(key, track) {
  if (!audioContext) return;
  const existing = levelMonitors.get(key);
  if (existing && existing.source.mediaStream.getAudioTracks()[0] === track) return;
  stopMonitoringLevel(key);
  try {
    const source = audioContext.createMediaStreamSource(new MediaStream([track]));
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    levelMonitors.set(key, { source, analyser, level: 0 });
  } catch (err) {
    console.debug('cannot monitor audio level', err);
  }
  if (levelTimer === undefined) levelTimer = window.setInterval(updateSpeaking, 200);
}

/** @param {string} key */
function stopMonitoringLevel(key) {
  const monitor = levelMonitors.get(key);
  if (!monitor) return;
  monitor.source.disconnect();
  levelMonitors.delete(key);
  participantForMonitor(key)?.tile.classList.remove('speaking');
}

function stopLevelMonitoring() {
  for (const key of Array.from(levelMonitors.keys())) stopMonitoringLevel(key);
  window.clearInterval(levelTimer);
  levelTimer = undefined;
}

function updateSpeaking() {
  const samples = new Float32Array(512);
  for (const [key, monitor] of levelMonitors) {
    monitor.analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    const rms = Math.sqrt(sum / samples.length);
    // Smooth so the outline does not flicker between syllables.
    monitor.level = Math.max(rms, monitor.level * 0.7);
    const participant = participantForMonitor(key);
    if (!participant) continue;
    const speaking = participant.media.audio && monitor.level > 0.02;
    participant.tile.classList.toggle('speaking', speaking);
    if (speaking && !participant.self && key !== state.speaker
        && performance.now() - state.speakerSince > SPEAKER_HOLD_MS) {
      state.speaker = key;
      state.speakerSince = performance.now();
      if (state.layout === 'speaker' && !state.pinned) arrangeTiles();
    }
  }
}

function offerToEnableSound() {
  const button = byId('enable-sound');
  button.hidden = false;
}

function enableSound() {
  byId('enable-sound').hidden = true;
  audioContext?.resume().catch(() => {});
  byId('audio-sink').querySelectorAll('audio').forEach((audio) => {
    /** @type {HTMLAudioElement} */ (audio).play().catch(() => offerToEnableSound());
  });
}

// ---------------------------------------------------------------------------
// Controls

function initControls() {
  setIcon(byId('copy-link'), 'link');
  setIcon(byId('leave'), 'leave');
  setIcon(byId('toggle-chat'), 'chat');
  setIcon(byId('toggle-participants'), 'people');
  setIcon(byId('chat-send'), 'send');
  setIcon(byId('close-panel'), 'close');
  setIcon(byId('alone-dismiss'), 'close');
  setIcon(byId('gallery-prev'), 'previous');
  setIcon(byId('gallery-next'), 'next');
  renderViewToggle();
  byId('toggle-view').addEventListener('click', toggleLayout);
  byId('gallery-prev').addEventListener('click', () => turnGalleryPage(-1));
  byId('gallery-next').addEventListener('click', () => turnGalleryPage(1));

  byId('toggle-mic').addEventListener('click', toggleMic);
  byId('toggle-camera').addEventListener('click', toggleCamera);
  byId('toggle-screen').addEventListener('click', toggleScreenShare);
  byId('copy-link').addEventListener('click', copyLink);
  byId('alone-copy-link').addEventListener('click', copyLink);
  byId('alone-dismiss').addEventListener('click', () => {
    state.aloneDismissed = true;
    renderParticipantCount();
  });
  byId('leave').addEventListener('click', leaveMeeting);
  byId('toggle-chat').addEventListener('click', () => togglePanel('chat'));
  byId('toggle-participants').addEventListener('click', () => togglePanel('participants'));
  byId('tab-chat').addEventListener('click', () => openPanel('chat'));
  byId('tab-participants').addEventListener('click', () => openPanel('participants'));
  byId('close-panel').addEventListener('click', () => closePanel());
  byId('rejoin').addEventListener('click', rejoin);
  byId('enable-sound').addEventListener('click', enableSound);
  byId('chat-form').addEventListener('submit', (event) => {
    event.preventDefault();
    sendChat();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.panel && !byId('meeting').hidden) closePanel();
  });

  // Browsers without getDisplayMedia (most phones) cannot share a screen; do not offer it.
  if (!navigator.mediaDevices || !('getDisplayMedia' in navigator.mediaDevices)) byId('toggle-screen').hidden = true;

  new ResizeObserver(() => layoutStage()).observe(byId('stage'));
  byId('grid').addEventListener('scroll', reportView, { passive: true });
  window.addEventListener('pagehide', () => state.client?.leave());
  renderControls();
}

function renderControls() {
  renderToggle(byId('toggle-mic'), {
    on: !!state.micTrack && state.micOn,
    available: !!state.micTrack || !!microphoneTrackSetter(state.client),
    onIcon: 'mic', offIcon: 'mic-off',
    onLabel: 'Mute', offLabel: 'Unmute', unavailableLabel: 'No microphone: rejoin after allowing it',
  });
  renderToggle(byId('toggle-camera'), {
    on: !!state.cameraTrack,
    available: true,
    onIcon: 'camera', offIcon: 'camera-off',
    onLabel: 'Stop video', offLabel: 'Start video', unavailableLabel: '',
  });
  const screen = byId('toggle-screen');
  const sharing = !!state.screenTrack;
  const screenLabel = sharing ? 'Stop sharing' : 'Share screen';
  setIcon(screen, sharing ? 'screen-stop' : 'screen');
  screen.setAttribute('aria-label', screenLabel);
  screen.title = screenLabel;
  screen.setAttribute('aria-pressed', String(sharing));
  screen.dataset.state = sharing ? 'on' : 'off';
  screen.classList.toggle('active', sharing);
}

/**
 * setMicrophoneTrack is not in the documented MeetingClient API; use it when the
 * client has it, so someone who joined without a microphone can add one later.
 * @param {MeetingClient | null} client
 * @returns {((track: MediaStreamTrack | null) => Promise<void>) | null}
 */
function microphoneTrackSetter(client) {
  const setter = client && /** @type {any} */ (client).setMicrophoneTrack;
  return typeof setter === 'function' ? setter.bind(client) : null;
}

async function toggleMic() {
  const client = state.client;
  if (!client) return;
  // The SFU drops this person's sound until the host allows it: say so, do not pretend.
  if (state.mutedByHost && !state.micOn) {
    showToast('The host muted you: they can allow you to unmute', 4000);
    return;
  }
  if (!state.micTrack) {
    await addMicrophone(client);
    return;
  }
  state.micOn = !state.micOn;
  state.micTrack.enabled = state.micOn;
  client.setMicrophoneEnabled(state.micOn);
  renderControls();
  refreshSelf();
}

/**
 * Asks for a microphone after joining without one.
 * @param {MeetingClient} client
 */
async function addMicrophone(client) {
  const setTrack = microphoneTrackSetter(client);
  if (!setTrack) return;
  const media = await acquireMedia(true, false);
  if (!media.audioTrack) {
    showToast(describeDeviceError('microphone', media.audioError), 6000);
    return;
  }
  if (state.client !== client) {
    media.audioTrack.stop();
    return;
  }
  state.micTrack = media.audioTrack;
  state.micOn = true;
  try {
    await setTrack(media.audioTrack);
    client.setMicrophoneEnabled(true);
  } catch (err) {
    console.error('adding the microphone failed', err);
    showToast('Could not turn on the microphone: try again');
  }
  renderControls();
  refreshSelf();
}

async function toggleCamera() {
  const client = state.client;
  if (!client || state.cameraBusy) return;
  state.cameraBusy = true;
  byId('toggle-camera').setAttribute('aria-busy', 'true');
  try {
    if (state.cameraTrack) {
      const old = state.cameraTrack;
      state.cameraTrack = null;
      await client.setCameraTrack(null);
      // Stopping the track is what turns the camera light off.
      old.stop();
    } else {
      const media = await acquireMedia(false, true);
      if (!media.videoTrack) {
        showToast(describeDeviceError('camera', media.videoError), 6000);
        return;
      }
      if (state.client !== client) {
        media.videoTrack.stop();
        return;
      }
      state.cameraTrack = media.videoTrack;
      await client.setCameraTrack(media.videoTrack);
    }
  } catch (err) {
    console.error('camera toggle failed', err);
    showToast('Could not change the camera: try again');
  } finally {
    state.cameraBusy = false;
    byId('toggle-camera').removeAttribute('aria-busy');
    renderControls();
    refreshSelf();
  }
}

async function toggleScreenShare() {
  const client = state.client;
  if (!client || state.screenBusy) return;
  if (state.screenTrack) {
    await stopScreenShare();
    return;
  }
  state.screenBusy = true;
  try {
    // Slides and code: sharp text over smooth motion, at a frame rate text needs.
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15, max: 30 } } });
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    if ('contentHint' in track) track.contentHint = 'detail';
    if (state.client !== client) {
      track.stop();
      return;
    }
    state.screenTrack = track;
    // The browser's own "Stop sharing" bar ends the track without going through our button.
    track.addEventListener('ended', () => {
      if (state.screenTrack === track) stopScreenShare();
    });
    await client.startScreenShare(track);
    if (state.self) showScreenTile(state.self, track);
  } catch (err) {
    const name = /** @type {any} */ (err) && /** @type {any} */ (err).name;
    // NotAllowedError is the person cancelling the picker: not worth a message.
    if (name !== 'NotAllowedError' && name !== 'AbortError') {
      console.error('screen share failed', err);
      showToast('Could not share the screen');
    }
    if (state.screenTrack) {
      state.screenTrack.stop();
      state.screenTrack = null;
    }
  } finally {
    state.screenBusy = false;
    renderControls();
    refreshSelf();
  }
}

async function stopScreenShare() {
  const track = state.screenTrack;
  state.screenTrack = null;
  if (state.self) removeScreenTile(state.self);
  renderControls();
  refreshSelf();
  try {
    await state.client?.stopScreenShare();
  } catch (err) {
    console.warn('stopScreenShare failed', err);
  }
  track?.stop();
}

async function copyLink() {
  const link = location.href;
  try {
    if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error('no clipboard');
    await navigator.clipboard.writeText(link);
    showToast('Link copied');
  } catch {
    showLinkDialog(link);
  }
}

/** @param {string} link */
function showLinkDialog(link) {
  const dialog = /** @type {HTMLDialogElement} */ (byId('link-dialog'));
  const input = /** @type {HTMLInputElement} */ (byId('link-text'));
  input.value = link;
  if (!dialog.open) dialog.showModal();
  input.focus();
  input.select();
}

/** @type {number | undefined} */
let toastTimer;

/**
 * @param {string} text
 * @param {number} [duration] milliseconds
 */
function showToast(text, duration = 2500) {
  const toast = byId('toast');
  toast.textContent = text;
  toast.hidden = false;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => { toast.hidden = true; }, duration);
}

/**
 * Joins and leaves go to the screen reader live region, and show briefly.
 * @param {string} text
 */
function announce(text) {
  if (state.joinedAt && Date.now() - state.joinedAt > 1500) showToast(text);
}

// ---------------------------------------------------------------------------
// Side panel: chat and participants

/** @param {'chat' | 'participants'} which */
function togglePanel(which) {
  if (state.panel === which) closePanel();
  else openPanel(which);
}

/** @param {'chat' | 'participants'} which */
function openPanel(which) {
  state.panel = which;
  if (which === 'chat') {
    state.unread = 0;
    renderUnread();
  }
  renderPanel();
  layoutStage();
  if (which === 'chat') {
    const messages = byId('chat-messages');
    messages.scrollTop = messages.scrollHeight;
    // On a phone the keyboard would cover the messages just opened.
    if (window.matchMedia('(min-width: 720px)').matches) byId('chat-input').focus();
  }
}

function closePanel() {
  state.panel = null;
  renderPanel();
  layoutStage();
}

function renderPanel() {
  const { panel } = state;
  byId('side-panel').hidden = panel === null;
  byId('meeting').classList.toggle('panel-open', panel !== null);
  byId('chat-section').hidden = panel !== 'chat';
  byId('participants-section').hidden = panel !== 'participants';
  byId('tab-chat').setAttribute('aria-selected', String(panel === 'chat'));
  byId('tab-participants').setAttribute('aria-selected', String(panel === 'participants'));
  byId('toggle-chat').setAttribute('aria-pressed', String(panel === 'chat'));
  byId('toggle-participants').setAttribute('aria-pressed', String(panel === 'participants'));
}

function renderUnread() {
  const badge = byId('chat-badge');
  badge.textContent = state.unread > 9 ? '9+' : String(state.unread);
  badge.hidden = state.unread === 0;
  byId('toggle-chat').setAttribute('aria-label', state.unread ? `Chat (${state.unread} unread)` : 'Chat');
}

function sendChat() {
  const input = /** @type {HTMLInputElement} */ (byId('chat-input'));
  const text = input.value.trim();
  if (!text || !state.client) return;
  state.client.sendChat(text);
  input.value = '';
}

/**
 * @param {{ from: string, name: string, text: string, time: number, self: boolean }} message
 */
function addChatMessage({ from, name, text, time, self }) {
  const list = byId('chat-messages');
  byId('chat-empty').hidden = true;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  const sender = self ? 'You' : name || state.participants.get(from)?.name || 'Guest';

  const item = el('div', self ? 'chat-message self' : 'chat-message');
  item.dataset.from = from;
  const meta = el('div', 'chat-meta');
  meta.append(el('span', 'chat-sender', sender));
  const when = new Date(time || Date.now());
  const timeElement = el('time', 'chat-time', when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
  timeElement.dateTime = when.toISOString();
  meta.append(timeElement);
  item.append(meta, el('div', 'chat-text', text));
  list.append(item);
  if (nearBottom || self) list.scrollTop = list.scrollHeight;

  if (state.panel !== 'chat' && !self) {
    state.unread += 1;
    renderUnread();
    const preview = text.length > 80 ? text.slice(0, 79) + '…' : text;
    showToast(`${sender}: ${preview}`, 4000);
  }
}

// ---------------------------------------------------------------------------
// Start

function initMeetingPage() {
  fillIconPlaceholders();
  initControls();
  initHostControls();
  renderPanel();
  initPrejoin().catch((err) => console.error('pre-join failed', err));
}

if (document.body.dataset.page === 'start') initStartPage();
else if (document.body.dataset.page === 'meeting') initMeetingPage();
