// @ts-check
/**
 * Confide's client library: creating meetings, deriving the join token from the
 * link secret, the signalling protocol of docs/protocol.md, and the one
 * RTCPeerConnection per participant. No DOM code: the UI (app.js) assigns the
 * on* callbacks and calls the methods.
 */

const PROTOCOL_VERSION = 1;
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const PING_INTERVAL_MS = 10000;
const encoder = new TextEncoder();

/** @param {Uint8Array} bytes */
export function base64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** @param {string} text */
export function fromBase64url(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/**
 * HKDF-SHA-256 from the link secret with the meeting id as salt (DESIGN.md section 3).
 * @param {Uint8Array} linkSecret @param {string} meetingId @param {string} label
 */
async function deriveFromLink(linkSecret, meetingId, label) {
  const key = await crypto.subtle.importKey('raw', linkSecret, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: encoder.encode(meetingId), info: encoder.encode(`confide/1 ${label}`) },
    key, 256);
  return new Uint8Array(bits);
}

/** The token shown to the server to enter; the server stores only its SHA-256. */
export function deriveJoinToken(/** @type {Uint8Array} */ linkSecret, /** @type {string} */ meetingId) {
  return deriveFromLink(linkSecret, meetingId, 'join-token');
}

/** @returns {Promise<{meetingId: string, linkSecret: string}>} */
export async function createMeeting() {
  const created = await fetch('/api/meetings', { method: 'POST' });
  if (!created.ok) throw new Error(`the server refused to create a meeting (${created.status})`);
  const { meeting_id: meetingId } = await created.json();
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const token = await deriveJoinToken(secret, meetingId);
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', token));
  const verifier = Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
  const registered = await fetch(`/api/meetings/${meetingId}/verifier`, {
    method: 'PUT', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ join_token_verifier: verifier }),
  });
  if (!registered.ok) throw new Error(`the server refused the meeting key (${registered.status})`);
  return { meetingId, linkSecret: base64url(secret) };
}

/** @param {Location} location @returns {{meetingId: string, linkSecret: string} | null} */
export function parseMeetingLink(location) {
  const match = /^\/m\/([a-z2-7]{26})$/.exec(location.pathname);
  const secret = location.hash.replace(/^#/, '');
  if (!match || !/^[A-Za-z0-9_-]{43}$/.test(secret)) return null;
  return { meetingId: match[1], linkSecret: secret };
}

/** @param {string} kind 'audio' | 'camera' | 'screen' */
const mediaKindOf = (kind) => (kind === 'audio' ? 'audio' : 'video');

/**
 * @typedef {{audio: boolean, camera: boolean, screen: boolean}} MediaState
 * @typedef {{id: string, participant: string, kind: string}} StreamInfo
 * @typedef {{transceiver: RTCRtpTransceiver, mediaKind: string, streamId: string | null,
 *   shown: StreamInfo | null}} ReceiveSlot
 */

export class MeetingClient {
  /** @param {{meetingId: string, linkSecret: string}} link */
  constructor({ meetingId, linkSecret }) {
    this.meetingId = meetingId;
    this.linkSecret = fromBase64url(linkSecret);
    /** @type {(status: string, detail: string) => void} */
    this.onstatus = () => {};
    /** @type {(p: {id: string, name: string, media: MediaState}) => void} */
    this.onparticipantjoined = () => {};
    /** @type {(p: {id: string, reason: string}) => void} */
    this.onparticipantleft = () => {};
    /** @type {(p: {id: string, media: MediaState}) => void} */
    this.onparticipantmedia = () => {};
    /** @type {(t: {participantId: string, kind: string, track: MediaStreamTrack}) => void} */
    this.ontrack = () => {};
    /** @type {(t: {participantId: string, kind: string}) => void} */
    this.ontrackended = () => {};
    /** @type {(m: {from: string, name: string, text: string, time: number, self: boolean}) => void} */
    this.onchat = () => {};
    /** @type {(e: {code: string, message: string, fatal: boolean}) => void} */
    this.onerror = () => {};

    this._selfId = '';
    this._name = '';
    /** @type {MediaStreamTrack | null} */ this._audioTrack = null;
    /** @type {MediaStreamTrack | null} */ this._cameraTrack = null;
    /** @type {MediaStreamTrack | null} */ this._screenTrack = null;
    this._microphoneEnabled = true;
    /** @type {WebSocket | null} */ this._socket = null;
    /** @type {RTCPeerConnection | null} */ this.peerConnection = null;
    /** @type {Record<string, RTCRtpTransceiver>} */ this._sending = {};
    /** @type {ReceiveSlot[]} */ this._receiving = [];
    /** @type {StreamInfo[]} */ this._streams = [];
    /** @type {Map<string, {name: string, media: MediaState}>} */ this.participants = new Map();
    this._negotiating = false;
    this._negotiationWanted = false;
    /** @type {((sdp: string) => void) | null} */ this._answerWaiter = null;
    this._left = false;
    this._fatal = false;
    this._attempt = 0;
    this._wasWelcomed = false;
    /** @type {number | undefined} */ this._pingTimer = undefined;
  }

  get selfId() { return this._selfId; }

  /** @param {string} name @param {{audioTrack: MediaStreamTrack | null, videoTrack: MediaStreamTrack | null}} tracks */
  async join(name, { audioTrack, videoTrack }) {
    this._name = name;
    this._audioTrack = audioTrack;
    this._cameraTrack = videoTrack;
    this._token = base64url(await deriveJoinToken(this.linkSecret, this.meetingId));
    this._connect();
  }

  _connect() {
    this.onstatus(this._wasWelcomed ? 'reconnecting' : 'connecting',
      this._wasWelcomed ? 'Connection lost: reconnecting…' : 'Connecting…');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    this._socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this._send({ type: 'hello', version: PROTOCOL_VERSION, meeting: this.meetingId,
        token: this._token, profile: JSON.stringify({ name: this._name }) });
      this._pingTimer = window.setInterval(() => this._send({ type: 'ping' }), PING_INTERVAL_MS);
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      this._dispatch(message).catch((error) => console.error('confide: message failed', error));
    };
    socket.onclose = () => {
      window.clearInterval(this._pingTimer);
      if (this._socket !== socket) return;
      this._teardown();
      if (this._left || this._fatal) return;
      if (!opened) {
        this.onerror({ code: 'server-unreachable', message: 'Cannot reach the server: retrying…', fatal: false });
      }
      this.onstatus('reconnecting', 'Connection lost: reconnecting…');
      const delay = RECONNECT_DELAYS_MS[Math.min(this._attempt, RECONNECT_DELAYS_MS.length - 1)];
      this._attempt += 1;
      window.setTimeout(() => { if (!this._left) this._connect(); }, delay);
    };
  }

  /** Forget the media session and everyone in it; a reconnect starts afresh. */
  _teardown() {
    for (const slot of this._receiving) this._hide(slot);
    for (const id of this.participants.keys()) this.onparticipantleft({ id, reason: 'disconnected' });
    this.participants.clear();
    this._receiving = [];
    this._sending = {};
    this._streams = [];
    if (this.peerConnection) this.peerConnection.close();
    this.peerConnection = null;
    this._negotiating = false;
    this._negotiationWanted = false;
    this._answerWaiter = null;
  }

  /** @param {object} message */
  _send(message) {
    if (this._socket && this._socket.readyState === WebSocket.OPEN) this._socket.send(JSON.stringify(message));
  }

  /** @param {string} profile */
  _nameFrom(profile) {
    try {
      const parsed = JSON.parse(profile);
      if (typeof parsed.name === 'string' && parsed.name.trim()) return parsed.name.slice(0, 64);
    } catch { /* a profile we cannot read still gets a tile */ }
    return 'Guest';
  }

  /** @param {any} message */
  async _dispatch(message) {
    switch (message.type) {
      case 'welcome':
        this._selfId = message.you;
        this._wasWelcomed = true;
        this._attempt = 0;
        for (const p of message.participants) this._addParticipant(p);
        this._createPeerConnection();
        this._announceMedia();
        this._streams = message.streams;
        await this._negotiate();
        break;
      case 'joined':
        this._addParticipant(message.participant);
        break;
      case 'left':
        if (this.participants.delete(message.id)) {
          this.onparticipantleft({ id: message.id, reason: message.reason });
        }
        break;
      case 'media': {
        const participant = this.participants.get(message.id);
        if (!participant) break;
        participant.media = { audio: message.audio, camera: message.camera, screen: message.screen };
        this.onparticipantmedia({ id: message.id, media: participant.media });
        break;
      }
      case 'streams':
        this._streams = message.streams;
        await this._negotiate();
        break;
      case 'answer':
        if (this._answerWaiter) this._answerWaiter(message.sdp);
        break;
      case 'chat':
        this.onchat({ from: message.from, name: this.participants.get(message.from)?.name ?? 'Guest',
          text: String(message.body), time: message.time, self: false });
        break;
      case 'error':
        if (message.fatal) {
          this._fatal = true;
          this.onstatus('failed', message.message);
        }
        this.onerror({ code: message.code, message: message.message, fatal: message.fatal });
        break;
      default:
        break;
    }
  }

  /** @param {{id: string, profile: string, media: MediaState}} p */
  _addParticipant(p) {
    const entry = { name: this._nameFrom(p.profile), media: p.media };
    this.participants.set(p.id, entry);
    this.onparticipantjoined({ id: p.id, name: entry.name, media: entry.media });
  }

  _createPeerConnection() {
    // No STUN or TURN servers: the SFU's own host candidate is all the browser needs.
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.peerConnection = pc;
    this._sending.audio = pc.addTransceiver(this._audioTrack ?? 'audio',
      { direction: this._audioTrack ? 'sendonly' : 'inactive' });
    this._sending.camera = pc.addTransceiver(this._cameraTrack ?? 'video',
      { direction: this._cameraTrack ? 'sendonly' : 'inactive' });
    if (this._audioTrack) this._audioTrack.enabled = this._microphoneEnabled;
    if (this._screenTrack) {
      this._sending.screen = pc.addTransceiver(this._screenTrack, { direction: 'sendonly' });
    }
    pc.onconnectionstatechange = () => {
      if (this.peerConnection !== pc) return;
      const state = pc.connectionState;
      if (state === 'connected') this.onstatus('connected', 'Connected');
      else if (state === 'disconnected') this.onstatus('reconnecting', 'Media interrupted: reconnecting…');
      else if (state === 'failed') {
        this.onstatus('reconnecting', 'Media connection failed: reconnecting…');
        // Start over with a fresh session; the server drops the old one.
        this._socket?.close();
      }
    };
  }

  /** Bring receive transceivers in line with the streams on offer, then offer. */
  _reconcileReceivers() {
    const pc = this.peerConnection;
    if (!pc) return;
    const wanted = new Map(this._streams.map((s) => [s.id, s]));
    for (const slot of this._receiving) {
      if (slot.streamId && !wanted.has(slot.streamId)) {
        slot.streamId = null;
        slot.transceiver.direction = 'inactive';
        this._hide(slot);
      }
    }
    const assigned = new Set(this._receiving.map((s) => s.streamId));
    for (const stream of this._streams) {
      if (assigned.has(stream.id)) continue;
      const mediaKind = mediaKindOf(stream.kind);
      let slot = this._receiving.find((s) => !s.streamId && !s.shown && s.mediaKind === mediaKind);
      if (!slot) {
        slot = { transceiver: pc.addTransceiver(mediaKind, { direction: 'recvonly' }), mediaKind,
          streamId: null, shown: null };
        this._receiving.push(slot);
      }
      slot.streamId = stream.id;
      slot.transceiver.direction = 'recvonly';
    }
  }

  /** @param {ReceiveSlot} slot */
  _hide(slot) {
    if (!slot.shown) return;
    this.ontrackended({ participantId: slot.shown.participant, kind: slot.shown.kind });
    slot.shown = null;
  }

  async _negotiate() {
    if (this._negotiating) { this._negotiationWanted = true; return; }
    this._negotiating = true;
    try {
      do {
        this._negotiationWanted = false;
        await this._negotiateOnce();
      } while (this._negotiationWanted && this.peerConnection);
    } finally {
      this._negotiating = false;
    }
  }

  async _negotiateOnce() {
    const pc = this.peerConnection;
    if (!pc) return;
    this._reconcileReceivers();
    await pc.setLocalDescription(await pc.createOffer());
    /** @type {Record<string, object>} */
    const mids = {};
    for (const [kind, transceiver] of Object.entries(this._sending)) {
      if (transceiver.mid) mids[transceiver.mid] = { send: kind };
    }
    for (const slot of this._receiving) {
      if (slot.transceiver.mid) mids[slot.transceiver.mid] = { recv: slot.streamId };
    }
    const answer = new Promise((resolve) => { this._answerWaiter = resolve; });
    this._send({ type: 'offer', sdp: pc.localDescription?.sdp, mids });
    const sdp = /** @type {string} */ (await answer);
    this._answerWaiter = null;
    if (this.peerConnection !== pc) return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    // Tell the UI about streams that now arrive, from our own mapping of mids to streams.
    const byId = new Map(this._streams.map((s) => [s.id, s]));
    for (const slot of this._receiving) {
      const stream = slot.streamId ? byId.get(slot.streamId) ?? null : null;
      if (slot.shown?.id === stream?.id) continue;
      this._hide(slot);
      if (stream) {
        slot.shown = stream;
        this.ontrack({ participantId: stream.participant, kind: stream.kind, track: slot.transceiver.receiver.track });
      }
    }
  }

  _announceMedia() {
    this._send({ type: 'media', audio: Boolean(this._audioTrack) && this._microphoneEnabled,
      camera: Boolean(this._cameraTrack), screen: Boolean(this._screenTrack) });
  }

  /** @param {boolean} enabled */
  setMicrophoneEnabled(enabled) {
    this._microphoneEnabled = enabled;
    if (this._audioTrack) this._audioTrack.enabled = enabled;
    this._announceMedia();
  }

  /** Swap in the microphone track, e.g. after it was unavailable at join. @param {MediaStreamTrack | null} track */
  async setMicrophoneTrack(track) {
    this._audioTrack = track;
    await this._setSendTrack('audio', track);
  }

  /** @param {MediaStreamTrack | null} track null turns the camera off */
  async setCameraTrack(track) {
    this._cameraTrack = track;
    await this._setSendTrack('camera', track);
  }

  /** @param {MediaStreamTrack} track */
  async startScreenShare(track) {
    this._screenTrack = track;
    const pc = this.peerConnection;
    if (pc && !this._sending.screen) {
      this._sending.screen = pc.addTransceiver(track, { direction: 'sendonly' });
      this._announceMedia();
      await this._negotiate();
    } else {
      await this._setSendTrack('screen', track);
    }
  }

  async stopScreenShare() {
    this._screenTrack = null;
    await this._setSendTrack('screen', null);
  }

  /** @param {string} kind @param {MediaStreamTrack | null} track */
  async _setSendTrack(kind, track) {
    if (track && kind === 'audio') track.enabled = this._microphoneEnabled;
    this._announceMedia();
    const transceiver = this._sending[kind];
    if (!transceiver) return;
    await transceiver.sender.replaceTrack(track);
    // A sender with no track stops being a stream the others see; one with a track starts.
    const direction = track ? 'sendonly' : 'inactive';
    if (transceiver.direction !== direction) {
      transceiver.direction = direction;
      await this._negotiate();
    }
  }

  /** @param {string} text */
  sendChat(text) {
    const trimmed = text.trim();
    if (!trimmed) return;
    this._send({ type: 'chat', body: trimmed });
    this.onchat({ from: this._selfId, name: this._name, text: trimmed, time: Date.now(), self: true });
  }

  leave() {
    this._left = true;
    this._send({ type: 'leave' });
    this._socket?.close();
    this._teardown();
    this.onstatus('ended', 'You left the meeting');
  }
}
