// @ts-check
/**
 * Confide's client library: creating meetings, deriving the join key from the
 * link secret, the signalling protocol of docs/protocol.md, and the one
 * RTCPeerConnection per participant. No DOM code: the UI (app.js) assigns the
 * on* callbacks and calls the methods.
 */

import {
  ChatWindow, E2eeError, MeetingKeys, concat, fingerprint, kidOf, linkSecretHash, openChat, parseChat,
  ratchet, securityCode, sealChat,
} from './e2ee.js';
import {
  ActionGuard, HostKey, PERSON_TARGETED, POLICY_KINDS, b64url, ed25519FromSeed, fromB64url, hostKeyHash,
  loadHostSeed, passAdmits, policyOf, signAction, storeHostSeed, verifyAction, verifySigned,
} from './host.js';
import { forgetMeetingIdentity, keepPass, meetingIdentity } from './identity.js';

const PROTOCOL_VERSION = 1;
// After a leave, how long receivers get to install the fresh key before it is used.
const REKEY_SWITCH_DELAY_MS = 700;
const LEAVER_KEY_GRACE_MS = 5000;
/** How often each sender takes a fresh key, with or without joins and leaves (as Zoom). */
const KEY_ROTATION_MS = 5 * 60 * 1000;
/** How long after someone arrives frames without their key count as pending, not failing. */
const KEY_ARRIVAL_GRACE_MS = 5000;
/** How long someone has to answer a liveness challenge. */
const LIVENESS_TIMEOUT_MS = 10000;
/** How long a receive slot still takes the frames of the stream it had before. */
const SLOT_HANDOVER_MS = 2000;
const MAX_CHAT_RATCHET_STEPS = 16;
/** Reconnect backoff: the first try within half a second, then doubling up to 4 s. */
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 4000;
/** WebSocket close code 1012, "service restart": the server's own shutdown. */
const CLOSE_SERVICE_RESTART = 1012;
const PING_INTERVAL_MS = 10000;
/** Media interrupted this long with signalling up: restart ICE, and again every so often. */
const ICE_RESTART_AFTER_MS = 3000;
const ICE_RESTART_EVERY_MS = 8000;
/** Camera simulcast layers: a quarter, half and full size, at about 150, 500 and 1,500 kbit/s. */
const CAMERA_LAYERS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];
/** How often at most the page tells the SFU what it shows. */
const VIEW_INTERVAL_MS = 250;
const encoder = new TextEncoder();

// The link's base64url, for other front ends and the tests.
export { b64url as base64url, fromB64url as fromBase64url };

/**
 * HKDF-SHA-256 from the link secret with the meeting id as salt (docs/design.md,
 * 'The key schedule').
 * @param {Uint8Array} linkSecret @param {string} meetingId @param {string} label
 */
async function deriveFromLink(linkSecret, meetingId, label) {
  const key = await crypto.subtle.importKey('raw', linkSecret, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: encoder.encode(meetingId), info: encoder.encode(`confide/1 ${label}`) },
    key, 256);
  return new Uint8Array(bits);
}

/**
 * The join key: an Ed25519 key whose seed comes from the link secret. Its signature
 * over the server's challenge admits a browser; the server holds only the public key,
 * so nothing it sees or stores lets anyone in.
 * @param {Uint8Array} linkSecret @param {string} meetingId
 * @returns {Promise<{privateKey: CryptoKey, publicKey: Uint8Array}>}
 */
export async function deriveJoinKey(linkSecret, meetingId) {
  return ed25519FromSeed(await deriveFromLink(linkSecret, meetingId, 'join-key'));
}

/** What the join key signs: this meeting and the server's nonce for this connection. @param {string} meetingId @param {Uint8Array} nonce */
function joinChallenge(meetingId, nonce) {
  const prefix = encoder.encode(`confide/1 join|${meetingId}|`);
  const challenge = new Uint8Array(prefix.length + nonce.length);
  challenge.set(prefix);
  challenge.set(nonce, prefix.length);
  return challenge;
}

/** @returns {Promise<{meetingId: string, linkSecret: string}>} */
export async function createMeeting() {
  const created = await fetch('/api/meetings', { method: 'POST' });
  if (created.status === 429) throw new Error('too-many-meetings');
  if (!created.ok) throw new Error(`the server refused to create a meeting (${created.status})`);
  const { meeting_id: meetingId } = await created.json();
  const secret = crypto.getRandomValues(new Uint8Array(32));
  const { publicKey } = await deriveJoinKey(secret, meetingId);
  // The creator is the host: its key signs host actions, this device keeps it.
  const host = await HostKey.generate();
  const registered = await fetch(`/api/meetings/${meetingId}/join-key`, {
    method: 'PUT', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ join_key: b64url(publicKey), host_key: b64url(host.publicKey) }),
  });
  if (!registered.ok) throw new Error(`the server refused the meeting key (${registered.status})`);
  await storeHostSeed(meetingId, host.seed);
  const hostHash = await hostKeyHash(host.publicKey);
  return { meetingId, linkSecret: `${b64url(secret)}.${b64url(hostHash)}` };
}

/**
 * The meeting link: `/m/<id>#<link secret>.<host key hash>`, and for the host's
 * other devices `.<host seed>` after that (a host link).
 * @param {Location} location
 * @returns {{meetingId: string, linkSecret: string, hostHash: string, hostSeed: string | null} | null}
 */
export function parseMeetingLink(location) {
  const match = /^\/m\/([a-z2-7]{26})$/.exec(location.pathname);
  const fragment = /^#([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{22})(?:\.([A-Za-z0-9_-]{43}))?$/
    .exec(location.hash);
  if (!match || !fragment) return null;
  return { meetingId: match[1], linkSecret: fragment[1], hostHash: fragment[2], hostSeed: fragment[3] ?? null };
}

/**
 * The camera as three VP8 simulcast encodings, smallest first: the SFU numbers layers
 * in this order and sends each receiver the one its tile needs. Every encoding goes
 * through the same frame transform, so one SFrame counter covers all of them. Three
 * temporal layers each, where the browser offers them, so the SFU can also halve a
 * frame rate.
 * @returns {RTCRtpEncodingParameters[]}
 */
export function cameraEncodings() {
  const modes = globalThis.RTCRtpSender?.getCapabilities?.('video')?.codecs
    ?.find((codec) => codec.mimeType.toLowerCase() === 'video/vp8')?.scalabilityModes ?? [];
  const temporal = modes.includes('L1T3') ? { scalabilityMode: 'L1T3' } : {};
  return CAMERA_LAYERS.map((layer) => ({ ...layer, ...temporal }));
}

/** @param {string} kind 'audio' | 'camera' | 'screen' */
const mediaKindOf = (kind) => (kind === 'audio' ? 'audio' : 'video');

/**
 * @typedef {{audio: boolean, camera: boolean, screen: boolean}} MediaState
 * @typedef {import('./e2ee.js').Announcement} Announcement
 * @typedef {{name: string, media: MediaState, peer: Announcement | null, fingerprint: string,
 *   live: boolean, liveFailed: boolean, admitted: boolean, interrupted: boolean, reveal: Uint8Array,
 *   since: number}} Person
 * `live`: they answered my fresh challenge with their identity key, so they are here
 * now and not an old announcement replayed; `liveFailed`: they did not, in time;
 * `admitted`: they carry a pass the host signed for their identity key.
 * @typedef {{id: string, participant: string, kind: string}} StreamInfo
 * @typedef {{transceiver: RTCRtpTransceiver, mediaKind: string, streamId: string | null,
 *   shown: StreamInfo | null, slot: string, senderId: number}} ReceiveSlot
 */

export class MeetingClient {
  /** @param {{meetingId: string, linkSecret: string, hostHash: string, hostSeed?: string | null}} link */
  constructor({ meetingId, linkSecret, hostHash, hostSeed = null }) {
    this.meetingId = meetingId;
    this.linkSecret = fromB64url(linkSecret);
    this.hostHash = fromB64url(hostHash);
    this._hostSeed = hostSeed ? fromB64url(hostSeed) : null;
    /** @type {HostKey | null} the host key, if this device holds it */ this.hostKey = null;
    this.isHost = false;
    this.isCohost = false;
    /** @type {{locked: boolean, lobby: boolean, screen_share: string, chat: boolean, has_host: boolean}} */
    this.policy = { locked: false, lobby: true, screen_share: 'host', chat: true, has_host: true };
    /** The version of the signed policy in force here: an older one is refused. */
    this._policyVersion = 0;
    /** My admission pass, as it travels: shown in hello to come back without the lobby. @type {any} */
    this._pass = null;
    /** Identity keys (base64url) a verified `remove` took out; `_blocked` also may not come back. */
    this._revoked = new Set();
    /** @type {Set<string>} */ this._blocked = new Set();
    /** Co-host keys (base64url) named by host actions this client checked, not taken back. @type {Set<string>} */
    this._cohostKeys = new Set();
    /** Refuses host actions replayed, stale or reordered by the server. */
    this._actionGuard = new ActionGuard();
    /** People waiting in the lobby (for hosts), with their identity key if it verified. @type {Map<string, {name: string, verified: boolean, identity: string}>} */
    this.knocks = new Map();
    /** @type {(l: {position: number, hostHere: boolean}) => void} waiting in the lobby */
    this.onlobby = () => {};
    /** @type {(k: {id: string, name: string, verified: boolean}) => void} someone knocks (hosts only) */
    this.onknock = () => {};
    /** @type {(k: {id: string}) => void} */
    this.onknockgone = () => {};
    /** @type {(a: {kind: string, target: string | null, params: any, by: string, byHost: boolean}) => void} a checked host action */
    this.onhostaction = () => {};
    /** @type {() => void} the host role or the meeting policy changed */
    this.onpolicy = () => {};
    /** @type {(link: string) => void} the host changed the meeting link: this is the new one */
    this.onlinkchanged = () => {};
    /** The hash of the new link secret a verified rekey action announced, until it arrives. */
    this._expectedLinkHash = '';
    /** Profiles that arrived under a roster key we do not have yet. @type {Array<{id: string, profile: string}>} */
    this._waitingProfiles = [];
    /** @type {(status: string, detail: string) => void} */
    this.onstatus = () => {};
    /** @type {(p: {id: string, name: string, media: MediaState}) => void} */
    this.onparticipantjoined = () => {};
    /** @type {(p: {id: string, reason: string}) => void} */
    this.onparticipantleft = () => {};
    /** @type {(p: {id: string, media: MediaState}) => void} */
    this.onparticipantmedia = () => {};
    /**
     * Someone's media stopped, or is back; `ours`: because our own connection was lost.
     * @type {(p: {id: string, interrupted: boolean, ours: boolean}) => void}
     */
    this.onparticipantconnection = () => {};
    /** @type {(t: {participantId: string, kind: string, track: MediaStreamTrack}) => void} */
    this.ontrack = () => {};
    /** @type {(t: {participantId: string, kind: string}) => void} */
    this.ontrackended = () => {};
    /** @type {(m: {from: string, name: string, text: string, time: number, self: boolean}) => void} */
    this.onchat = () => {};
    /** @type {(e: {code: string, message: string, fatal: boolean}) => void} */
    this.onerror = () => {};
    /** @type {(code: string) => void} the meeting security code changed */
    this.onsecuritycode = () => {};
    /** @type {(a: {participantId: string | null, message: string}) => void} something failed a MAC, signature or decryption */
    this.onsecurityalert = () => {};
    /**
     * Every second: whether everything sent and received is under SFrame.
     * `failing` lists participants whose frames do not decrypt; `unverified`
     * those whose keys failed verification (nothing is shared with them).
     * @type {(s: {endToEnd: boolean, failing: string[], unverified: string[], sent: number, dropped: number}) => void}
     */
    this.onencryption = () => {};

    this._selfId = '';
    this._name = '';
    /** @type {MediaStreamTrack | null} */ this._audioTrack = null;
    /** @type {MediaStreamTrack | null} */ this._cameraTrack = null;
    /** @type {MediaStreamTrack | null} */ this._screenTrack = null;
    this._microphoneEnabled = true;
    /** @type {WebSocket | null} */ this._socket = null;
    /** @type {RTCPeerConnection | null} */ this.peerConnection = null;
    /** The operator's TURN servers, from `welcome`. @type {RTCIceServer[]} */ this._iceServers = [];
    /** @type {Record<string, RTCRtpTransceiver>} */ this._sending = {};
    /** @type {ReceiveSlot[]} */ this._receiving = [];
    /** @type {StreamInfo[]} */ this._streams = [];
    /** @type {Map<string, Person>} */ this.participants = new Map();
    /** Those shown from before our connection was lost, until we are back. @type {Set<string>} */
    this._stale = new Set();
    /** @type {MeetingKeys | null} */ this.keys = null;
    this._sendEpoch = 0;
    this._sendKey = new Uint8Array(0);
    /** @type {number | undefined} */ this._rotationTimer = undefined;
    /** My open liveness challenges, by participant id. @type {Map<string, {challenge: Uint8Array, timer: number}>} */
    this._challenges = new Map();
    /** My chat messages' numbers, from 0 for this page's identity. */
    this._chatSeq = 0;
    /** Refuses chat messages the server delivers twice. */
    this._chatWindow = new ChatWindow();
    /** Receive keys by sender id, then epoch, for chat. @type {Map<number, Map<number, Uint8Array>>} */
    this._receiveKeys = new Map();
    this.securityCode = '';
    this._worker = new Worker('/static/e2ee-worker.js', { type: 'module' });
    this._worker.onmessage = (event) => this._onWorkerStats(event.data);
    this._slotCounter = 0;
    /** @type {{receiving: Record<string, {decrypted: number, failed: number, unknownKey: number, mislabelled: number}>} | null} */ this._lastStats = null;
    this._profile = '';
    /** @type {CryptoKey | null} */ this._joinKey = null;
    /** Messages are handled one at a time, in order. @type {Promise<void>} */
    this._inbox = Promise.resolve();
    /** What the page shows (setView), and the text last sent of it. @type {Record<string, number>} */
    this._view = {};
    this._viewSent = '';
    /** @type {number | undefined} */ this._viewTimer = undefined;
    this._negotiating = false;
    this._negotiationWanted = false;
    /** @type {((sdp: string | null) => void) | null} */ this._answerWaiter = null;
    this._left = false;
    this._fatal = false;
    /** A dismissal the host signed and this page checked: 'end', 'remove' or 'deny'. */
    this._signedDismissal = '';
    this._attempt = 0;
    this._wasWelcomed = false;
    /** @type {number | undefined} */ this._pingTimer = undefined;
    /** @type {number | undefined} */ this._iceRestartTimer = undefined;
    /** ICE restarts this page made, for the tests and the curious. */
    this.iceRestarts = 0;
    window.addEventListener('online', () => this._networkChanged());
  }

  get selfId() { return this._selfId; }

  /** @param {string} name @param {{audioTrack: MediaStreamTrack | null, videoTrack: MediaStreamTrack | null}} tracks */
  async join(name, { audioTrack, videoTrack }) {
    this._name = name;
    this._audioTrack = audioTrack;
    this._cameraTrack = videoTrack;
    this._joinKey = (await deriveJoinKey(this.linkSecret, this.meetingId)).privateKey;
    // The host key, from a host link or from this device's store, if it matches the link.
    const seed = this._hostSeed ?? await loadHostSeed(this.meetingId);
    if (seed) {
      const key = await HostKey.fromSeed(seed);
      if (b64url(await hostKeyHash(key.publicKey)) === b64url(this.hostHash)) {
        this.hostKey = key;
        if (this._hostSeed) await storeHostSeed(this.meetingId, seed);
      }
    }
    this.keys = await MeetingKeys.fromLink(this.linkSecret, this.meetingId);
    // The same identity for every reconnect (identity.js); fresh connection keys each time.
    const { signing, reveal, pass } = await meetingIdentity(this.meetingId);
    await this.keys.useIdentity(signing, reveal);
    this._pass = pass ?? null;
    this._chatSeq = 0;
    await this._connect();
  }

  async _connect() {
    // Fresh agreement keys, sender id and sender key for every (re)join.
    await this.keys?.newConnectionKeys();
    this._profile = (await this.keys?.announce(this._name)) ?? '';
    this.onstatus(this._wasWelcomed ? 'reconnecting' : 'connecting',
      this._wasWelcomed ? 'Connection lost: reconnecting…' : 'Connecting…');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    this._socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this._pingTimer = window.setInterval(() => this._send({ type: 'ping' }), PING_INTERVAL_MS);
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      // The answer is awaited inside a handler (negotiation), so it cannot queue behind it.
      if (message.type === 'answer') { this._answerWaiter?.(message.sdp); return; }
      this._inbox = this._inbox.then(() => this._dispatch(message))
        .catch((error) => console.error('confide: message failed', error));
    };
    socket.onclose = (event) => {
      window.clearInterval(this._pingTimer);
      if (this._socket !== socket) return;
      this._teardown();
      if (this._left || this._fatal) return;
      if (event.code === CLOSE_SERVICE_RESTART) {
        // Told, not lost: the server is restarting and will be back in a moment.
        this._attempt = 0;
        this.onstatus('reconnecting', 'The server is restarting: reconnecting…');
      } else {
        if (!opened) {
          this.onerror({ code: 'server-unreachable', message: 'Cannot reach the server: retrying…', fatal: false });
        }
        this.onstatus('reconnecting', 'Connection lost: reconnecting…');
      }
      this._reconnectLater();
    };
  }

  /**
   * The next try, after a backoff with jitter (so a restarted server is not met by
   * everyone at once), capped at a few seconds. Whatever fails before a socket
   * opens schedules the try after it: reconnecting never gives up.
   */
  _reconnectLater() {
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** this._attempt);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;
    this._attempt += 1;
    window.setTimeout(() => {
      if (this._left || this._fatal) return;
      this._connect().catch((error) => {
        console.error('confide: reconnect failed', error);
        this._reconnectLater();
      });
    }, delay);
  }

  /** Forget the media session and everyone in it; a reconnect starts afresh. */
  _teardown() {
    for (const slot of this._receiving) this._hide(slot);
    // Our connection is gone, not they: their tiles stay, marked as reconnecting,
    // until we are back and know who is still here (_dropStale).
    for (const id of this.participants.keys()) {
      this._stale.add(id);
      this.onparticipantconnection({ id, interrupted: true, ours: true });
    }
    this.participants.clear();
    window.clearInterval(this._rotationTimer);
    for (const { timer } of this._challenges.values()) window.clearTimeout(timer);
    this._challenges.clear();
    this._receiving = [];
    this._sending = {};
    this._streams = [];
    for (const senderId of this._receiveKeys.keys()) this._worker.postMessage({ type: 'forget-sender', senderId });
    this._receiveKeys.clear();
    this._worker.postMessage({ type: 'send-key', kid: 0, key: null });
    if (this.peerConnection) this.peerConnection.close();
    this.peerConnection = null;
    window.clearTimeout(this._iceRestartTimer);
    this._iceRestartTimer = undefined;
    this._negotiating = false;
    this._negotiationWanted = false;
    // An offer still waiting for its answer gets none: let it end, or every message
    // after it, the next connection's challenge too, would wait behind it for ever.
    this._answerWaiter?.(null);
    this._answerWaiter = null;
  }

  /** @param {object} message */
  _send(message) {
    if (this._socket && this._socket.readyState === WebSocket.OPEN) this._socket.send(JSON.stringify(message));
  }


  /** @param {any} message */
  async _dispatch(message) {
    switch (message.type) {
      case 'challenge': {
        const challenge = joinChallenge(this.meetingId, fromB64url(String(message.nonce)));
        const proof = new Uint8Array(await crypto.subtle.sign('Ed25519',
          /** @type {CryptoKey} */ (this._joinKey), challenge));
        const nonce = fromB64url(String(message.nonce));
        const hostProof = this.hostKey ? { host_proof: b64url(await this.hostKey.proveHost(this.meetingId, nonce)) } : {};
        const keys = /** @type {MeetingKeys} */ (this.keys);
        if (this.hostKey && !this._pass) {
          // The host admits itself, so that the others can check it like anyone else.
          this._pass = await signAction(this.hostKey.privateKey, this.hostKey.publicKey,
            { meeting: this.meetingId, kind: 'admit', target: 'host', params: { identity: b64url(keys.sPublic) } });
        }
        this._send({ type: 'hello', version: PROTOCOL_VERSION, meeting: this.meetingId,
          proof: b64url(proof), profile: this._profile, ...hostProof,
          identity: b64url(keys.sPublic), identity_proof: b64url(await keys.proveIdentity(nonce)),
          ...(this._pass ? { pass: this._pass } : {}) });
        break;
      }
      case 'lobby':
        this.onstatus('lobby', message.host_here ? 'Waiting for the host to let you in'
          : 'Waiting for the host to arrive');
        this.onlobby({ position: message.position, hostHere: message.host_here });
        break;
      case 'knock':
        await this._knock(message.id, message.profile);
        break;
      case 'knock-gone':
        if (this.knocks.delete(message.id)) this.onknockgone({ id: message.id });
        break;
      case 'host-action':
        await this._receiveHostAction(message);
        break;
      case 'ended':
        this._fatal = true;
        forgetMeetingIdentity(this.meetingId).catch(console.error);
        if (message.action && this._signedDismissal !== 'end') await this._checkDismissal(message, 'end');
        this.onstatus('ended', this._signedDismissal === 'end' ? 'The host ended the meeting'
          : 'The server closed the meeting (the host did not sign this)');
        break;
      case 'welcome':
        this._selfId = message.you;
        this._wasWelcomed = true;
        this._viewSent = '';  // a new session: the server knows nothing of our view yet
        this.setView(this._view);
        this._attempt = 0;
        this._iceServers = Array.isArray(message.ice_servers) ? message.ice_servers : [];
        this.isHost = Boolean(message.host);
        if (message.pass && await passAdmits(message.pass, this.meetingId, this.hostHash, b64url(this.keys?.sPublic ?? new Uint8Array()))) {
          this._takePass(message.pass);
        }
        await this._takeSignedPolicy(message.policy_signed, Boolean(message.policy?.has_host ?? true));
        // What was delegated may have changed while we were away: start from what is current.
        this._cohostKeys.clear();
        this.isCohost = false;
        await this._takeDelegations(message.cohosts ?? []);
        this.onpolicy();
        for (const p of message.participants) await this._addParticipant(p);
        this._dropStale();
        // Alone, too: the code covers this browser's own identity key.
        await this._updateSecurityCode();
        for (const knock of message.lobby ?? []) await this._knock(knock.id, knock.profile);
        await this._startSending();
        this._createPeerConnection();
        this._announceMedia();
        this._streams = message.streams;
        await this._negotiate();
        break;
      case 'joined': {
        if (this.participants.has(message.participant?.id)) {
          this.onsecurityalert({ participantId: message.participant.id,
            message: 'The server announced someone who is already here: ignored, possible attack' });
          break;
        }
        const person = await this._addParticipant(message.participant);
        // The newcomer gets only the next key in the ratchet, so cannot read the past.
        if (person.peer) await this._ratchetForNewcomer();
        break;
      }
      case 'left':
        await this._forgetParticipant(message.id, message.reason);
        break;
      case 'relay':
        await this._receiveRelay(message.from, message.body);
        break;
      case 'profile':
        await this._updateProfile(message.id, message.profile);
        break;
      case 'media': {
        const participant = this.participants.get(message.id);
        if (!participant) break;
        participant.media = { audio: message.audio, camera: message.camera, screen: message.screen };
        this.onparticipantmedia({ id: message.id, media: participant.media });
        break;
      }
      case 'connection': {
        // The server's word that someone's media stopped: shown as "reconnecting", no more.
        const person = this.participants.get(message.id);
        if (!person) break;
        person.interrupted = message.state === 'interrupted';
        this.onparticipantconnection({ id: message.id, interrupted: person.interrupted, ours: false });
        break;
      }
      case 'streams':
        this._streams = message.streams;
        await this._negotiate();
        break;
      case 'layers':
        await this._setActiveLayers(message.kind, message.active);
        break;
      case 'chat':
        await this._receiveChat(message.from, message.body, message.time);
        break;
      case 'error': {
        let { code } = message;
        if (code === 'removed' || code === 'denied') {
          // Said in the host's name: believed only with the host's signature.
          const kind = code === 'removed' ? 'remove' : 'deny';
          if (message.action && this._signedDismissal !== kind) await this._checkDismissal(message, kind);
          if (this._signedDismissal !== kind) code = `${code}-unsigned`;
        }
        if (message.fatal) {
          this._fatal = true;
          this.onstatus('failed', `The server says: ${message.message}`);
        }
        this.onerror({ code, message: message.message, fatal: message.fatal });
        break;
      }
      default:
        break;
    }
  }

  /**
   * Check a participant's announcement before showing them: a MAC the server
   * cannot make, a signature, and an identity key nobody else here uses.
   * @param {{id: string, profile: string, media: MediaState}} p
   */
  async _addParticipant(p) {
    /** @type {Person} */
    const person = { name: 'Unverified participant', media: p.media, peer: null, fingerprint: '',
      live: false, liveFailed: false, admitted: false, interrupted: false, reveal: new Uint8Array(0), since: Date.now() };
    try {
      const peer = await /** @type {MeetingKeys} */ (this.keys).openAnnouncement(p.profile);
      const taken = [...this.participants.values()].some((other) => other.peer
        && (other.peer.senderId === peer.senderId || toKey(other.peer.identity) === toKey(peer.identity)));
      if (taken || peer.senderId === this.keys?.senderId) throw new E2eeError('announcement repeats someone else’s keys');
      const identity = b64url(peer.sPublic);
      if (this._blocked.has(identity)) throw new E2eeError('the host removed and blocked this person');
      person.admitted = !this._revoked.has(identity)
        && await passAdmits(p.pass, this.meetingId, this.hostHash, identity);
      // With the lobby on, only the host's signature lets someone in, never the server's word.
      if (this.policy.lobby && !person.admitted) throw new E2eeError('nobody let them in: no pass signed by the host');
      person.peer = peer;
      person.name = peer.name.trim().slice(0, 64) || 'Guest';
      person.fingerprint = await fingerprint(peer.identity);
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
      this.onsecurityalert({ participantId: p.id,
        message: `A participant's keys failed verification (${error.message}): possible attack, nothing is shared with them` });
    }
    this.participants.set(p.id, person);
    this._rebindSlotsOf(p.id);
    this.onparticipantjoined({ id: p.id, name: person.name, media: person.media });
    await this._updateSecurityCode();
    if (person.peer) this._askLive(p.id);
    return person;
  }

  /**
   * Back after a lost connection: the people shown from before who are not here
   * now are let go, without a word (they did not leave before our eyes); those
   * still here are no longer marked.
   */
  _dropStale() {
    for (const id of this._stale) {
      if (this.participants.has(id)) this.onparticipantconnection({ id, interrupted: false, ours: true });
      else this.onparticipantleft({ id, reason: 'connection-lost' });
    }
    this._stale.clear();
  }

  /**
   * Ask someone to sign a fresh challenge: an announcement the server replays (of
   * someone who left) cannot answer. They get my sender key once they have.
   * @param {string} id
   */
  _askLive(id) {
    const challenge = crypto.getRandomValues(new Uint8Array(16));
    const timer = window.setTimeout(() => this._notLive(id), LIVENESS_TIMEOUT_MS);
    this._challenges.set(id, { challenge, timer });
    this._send({ type: 'relay', to: id, body: JSON.stringify({ t: 'live?', c: b64url(challenge) }) });
  }

  /**
   * No answer in time: said at once, but the challenge stays open, so that an answer
   * that was only slow (a busy machine, a congested link) still clears them.
   * @param {string} id
   */
  _notLive(id) {
    const person = this.participants.get(id);
    if (!person || person.live) return;
    person.liveFailed = true;
    this.onsecurityalert({ participantId: id, message: `${person.name} did not prove they are here (an old `
      + 'announcement replayed?): possible attack, nothing is shared with them' });
    this._updateSecurityCode().catch(console.error);
  }

  /** Someone asked me to prove I am here. @param {string} from @param {Announcement} peer @param {any} body */
  async _answerLive(from, peer, body) {
    const challenge = fromB64url(String(body.c));
    if (challenge.length !== 16 || !this.keys) return;
    const signature = await this.keys.proveLive(challenge, peer.sPublic);
    // My code reveal goes with it, to them alone: I have their commitment (their announcement).
    const reveal = await this.keys.sealFor(peer, 'code-reveal', this.keys.reveal);
    this._send({ type: 'relay', to: from, body: JSON.stringify({ t: 'live!', c: body.c, s: b64url(signature), r: reveal }) });
  }

  /** Someone answered my challenge. @param {string} from @param {Announcement} peer @param {any} body */
  async _checkLiveAnswer(from, peer, body) {
    const asked = this._challenges.get(from);
    const person = this.participants.get(from);
    if (!asked || !person || !this.keys || String(body.c) !== b64url(asked.challenge)) return;
    const reveal = await this._openReveal(peer, body.r);
    if (!reveal || !(await this.keys.checkLive(peer, asked.challenge, fromB64url(String(body.s))))) {
      this.onsecurityalert({ participantId: from, message: `${person.name}'s proof of being here failed: possible attack` });
      return;
    }
    window.clearTimeout(asked.timer);
    this._challenges.delete(from);
    person.reveal = reveal;
    person.live = true;
    person.liveFailed = false;
    await this._sendKeyTo([from]);
    await this._updateSecurityCode();
  }

  /**
   * Someone's code reveal, if it opens and matches the commitment in their
   * announcement. @param {Announcement} peer @param {any} sealed
   */
  async _openReveal(peer, sealed) {
    const keys = /** @type {MeetingKeys} */ (this.keys);
    try {
      const reveal = await keys.openFrom(peer, 'code-reveal', String(sealed));
      const commitment = await keys.codeCommitment(peer.sPublic, reveal);
      return toKey(commitment) === toKey(peer.commitment) ? reveal : null;
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
      return null;
    }
  }

  /** Someone left (or a verified action removed them). @param {string} id @param {string} reason */
  async _forgetParticipant(id, reason) {
    const person = this.participants.get(id);
    if (!person) return;
    this.participants.delete(id);
    window.clearTimeout(this._challenges.get(id)?.timer);
    this._challenges.delete(id);
    if (person.peer) {
      // Their last frames may still be on the way: forget their keys after the grace period.
      const { senderId } = person.peer;
      window.setTimeout(() => {
        this._receiveKeys.delete(senderId);
        this._chatWindow.forget(senderId);
        this._worker.postMessage({ type: 'forget-sender', senderId });
      }, LEAVER_KEY_GRACE_MS);
    }
    this.onparticipantleft({ id, reason });
    await this._updateSecurityCode();
    // The leaver holds our current key: make a fresh one for those who remain.
    await this._rekey();
  }

  async _updateSecurityCode() {
    if (!this.keys) return;
    // Each identity key with its code reveal, which nobody could know before choosing keys.
    const identities = [concat(this.keys.identity, this.keys.reveal)];
    for (const person of this.participants.values()) {
      if (person.peer && person.live) identities.push(concat(person.peer.identity, person.reveal));
    }
    this.securityCode = await securityCode(this.meetingId, identities);
    this.onsecuritycode(this.securityCode);
  }

  /** My fingerprint, to compare with what others see in their participant list. */
  async ownFingerprint() {
    return this.keys ? fingerprint(this.keys.identity) : '';
  }

  get _sendKid() { return kidOf(this.keys?.senderId ?? 0, this._sendEpoch); }

  /** A fresh sender key on joining, sent to everyone already here. */
  async _startSending() {
    this._sendEpoch = 0;
    this._sendKey = crypto.getRandomValues(new Uint8Array(32));
    this._useSendKey();
    await this._sendKeyTo([...this.participants.keys()]);
    this._startKeyRotation();
  }

  /**
   * A fresh sender key every few minutes, joins and leaves or not, so that a key
   * taken from a device later opens only the last minutes. @param {number} [intervalMs]
   */
  _startKeyRotation(intervalMs = KEY_ROTATION_MS) {
    window.clearInterval(this._rotationTimer);
    this._rotationTimer = window.setInterval(() => {
      if (this.peerConnection) this._rekey().catch(console.error);
    }, intervalMs);
  }

  _useSendKey() {
    this._worker.postMessage({ type: 'send-key', kid: this._sendKid, key: this._sendKey });
  }

  /** @param {string[]} participantIds */
  async _sendKeyTo(participantIds) {
    const kid = this._sendKid;
    const key = this._sendKey;
    for (const id of participantIds) {
      const person = this.participants.get(id);
      const peer = person?.live ? person.peer : null;
      if (!peer || !this.keys) continue;
      this._send({ type: 'relay', to: id, body: await this.keys.wrapSenderKey(peer, kid, key) });
    }
  }

  /** Someone came in: the next key in the ratchet, which they get once they proved they are here. */
  async _ratchetForNewcomer() {
    this._sendKey = await ratchet(this._sendKey);
    this._sendEpoch += 1;
    this._useSendKey();
  }

  /** Someone left, or it is time: a fresh random key for those here, used once they have it. */
  async _rekey() {
    this._sendKey = crypto.getRandomValues(new Uint8Array(32));
    this._sendEpoch += 1;
    const epoch = this._sendEpoch;
    await this._sendKeyTo([...this.participants.keys()]);
    window.setTimeout(() => { if (this._sendEpoch === epoch) this._useSendKey(); }, REKEY_SWITCH_DELAY_MS);
  }

  /** @param {string} from @param {string} body */
  async _receiveRelay(from, body) {
    const peer = this.participants.get(from)?.peer;
    if (!peer || !this.keys) return;
    let parsed = null;
    try { parsed = JSON.parse(body); } catch { /* a sender key check reports it below */ }
    if (parsed?.t === 'live?') { await this._answerLive(from, peer, parsed); return; }
    if (parsed?.t === 'live!') { await this._checkLiveAnswer(from, peer, parsed); return; }
    if (body.includes('"link-secret"')) {
      await this._receiveLinkSecret(peer, body);
      return;
    }
    try {
      const { kid, senderKey } = await this.keys.unwrapSenderKey(peer, body);
      if (!this._receiveKeys.has(peer.senderId)) this._receiveKeys.set(peer.senderId, new Map());
      this._receiveKeys.get(peer.senderId)?.set(kid % 256, senderKey);
      this._worker.postMessage({ type: 'receive-key', kid, key: senderKey });
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
      this.onsecurityalert({ participantId: from, message: `A key from a participant failed to decrypt (${error.message}): possible attack` });
    }
  }

  /** A peer's key for a KID, ratcheting forward from the last one known (after joins). @param {number} kid */
  async _receiveKeyFor(kid) {
    const known = this._receiveKeys.get(Math.floor(kid / 256));
    if (!known) return null;
    const epoch = kid % 256;
    for (let steps = 0; steps <= MAX_CHAT_RATCHET_STEPS; steps += 1) {
      let key = known.get((epoch - steps + 256) % 256);
      if (!key) continue;
      for (let i = 0; i < steps; i += 1) key = await ratchet(key);
      return key;
    }
    return null;
  }

  /** @param {string} from @param {string} body @param {number} time */
  async _receiveChat(from, body, time) {
    const person = this.participants.get(from);
    if (!person?.peer) return;
    try {
      const { kid, seq, sealed } = parseChat(body);
      if (Math.floor(kid / 256) !== person.peer.senderId) throw new E2eeError('chat names another sender');
      const key = await this._receiveKeyFor(kid);
      if (!key) throw new E2eeError('no key for this chat message yet');
      const text = await openChat(kid, seq, key, sealed);
      const refused = this._chatWindow.accept(person.peer.senderId, seq);
      if (refused) throw new E2eeError(`a message ${refused}`);
      this.onchat({ from, name: person.name, text, time, self: false });
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
      this.onsecurityalert({ participantId: from, message: `A chat message was refused (${error.message})` });
    }
  }

  /** @param {{sending: {encrypted: number, dropped: number}, receiving: Record<string, {decrypted: number, failed: number, unknownKey: number, mislabelled: number}>}} stats */
  _onWorkerStats(stats) {
    if (!this.peerConnection) return;
    const failing = [];
    const waiting = [];
    let receivedOk = true;
    const previous = this._lastStats?.receiving ?? {};
    for (const slot of this._receiving) {
      if (!slot.shown) continue;
      const now = stats.receiving[slot.slot];
      const before = previous[slot.slot] ?? { decrypted: 0, failed: 0, unknownKey: 0, mislabelled: 0 };
      // Nothing decrypted yet from a stream on show: nothing to call encrypted yet either,
      // unless its sender says it is off (a muted microphone sends nothing through the SFU).
      const media = this.participants.get(slot.shown.participant)?.media;
      const announcedOn = !media || /** @type {Record<string, boolean>} */ (media)[slot.shown.kind] !== false;
      if (!now?.decrypted && !now?.failed && announcedOn) {
        waiting.push(slot.shown.participant);
        receivedOk = false;
      }
      if (!now) continue;
      if (now.mislabelled > (before.mislabelled ?? 0)) {
        failing.push(slot.shown.participant);
        receivedOk = false;
        const name = this.participants.get(slot.shown.participant)?.name ?? 'someone';
        this.onsecurityalert({ participantId: slot.shown.participant,
          message: `Someone else's ${slot.shown.kind === 'audio' ? 'audio' : 'video'} arrived in ${name}'s tile and was not played: possible attack` });
      }
      const failed = now.failed - before.failed;
      const decrypted = now.decrypted - before.decrypted;
      if (failed > 0 && decrypted === 0) {
        // Right after someone arrives their key may still be on its way (it follows a
        // proof that they are here): only "no key yet" failures are pending, not failing.
        const person = this.participants.get(slot.shown.participant);
        const keyOnItsWay = now.unknownKey - (before.unknownKey ?? 0) === failed && !now.decrypted
          && person !== undefined && Date.now() - person.since < KEY_ARRIVAL_GRACE_MS;
        (keyOnItsWay ? waiting : failing).push(slot.shown.participant);
        receivedOk = false;
      }
    }
    this._lastStats = stats;
    const unverified = [...this.participants.entries()].filter(([, p]) => !p.peer || p.liveFailed).map(([id]) => id);
    this.onencryption({
      endToEnd: receivedOk && unverified.length === 0 && Boolean(this._sendKey.length),
      failing: [...new Set(failing)], waiting: [...new Set(waiting)], unverified,
      sent: stats.sending.encrypted, dropped: stats.sending.dropped });
  }
  _createPeerConnection() {
    // Only the operator's own TURN servers, from `welcome` (none by default): the SFU's
    // host candidate is all a browser that can reach its UDP port needs.
    const pc = new RTCPeerConnection({ iceServers: this._iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.peerConnection = pc;
    this._sending.audio = this._addSendTransceiver(pc, this._audioTrack ?? 'audio', 'audio',
      this._audioTrack ? 'sendonly' : 'inactive');
    this._sending.camera = this._addSendTransceiver(pc, this._cameraTrack ?? 'video', 'camera',
      this._cameraTrack ? 'sendonly' : 'inactive');
    if (this._audioTrack) this._audioTrack.enabled = this._microphoneEnabled;
    if (this._screenTrack) {
      this._sending.screen = this._addSendTransceiver(pc, this._screenTrack, 'screen', 'sendonly');
    }
    pc.onconnectionstatechange = () => {
      if (this.peerConnection !== pc) return;
      const state = pc.connectionState;
      if (state === 'connected') {
        window.clearTimeout(this._iceRestartTimer);
        this._iceRestartTimer = undefined;
        this.onstatus('connected', 'Connected');
      } else if (state === 'disconnected') {
        this.onstatus('reconnecting', 'Media interrupted: reconnecting…');
        this._restartIceSoon(pc, ICE_RESTART_AFTER_MS);
      } else if (state === 'failed' && onlyLoopback(pc.remoteDescription?.sdp ?? '')) {
        // Trying again cannot help: say why, rather than rejoin for ever.
        this._fatal = true;
        this.onerror({ code: 'media-unreachable', message: LOOPBACK_UNREACHABLE, fatal: true });
        this._socket?.close();
      } else if (state === 'failed') {
        // Signalling is alive: find a new path on the same session. The server keeps
        // our place for a grace period; past it, it closes the socket and we rejoin.
        this.onstatus('reconnecting', 'Media connection lost: reconnecting…');
        this._restartIceSoon(pc, 0);
      }
    };
  }

  /**
   * An ICE restart on the same session (new credentials, new candidates), unless
   * media comes back first; then again every ICE_RESTART_EVERY_MS while it does not.
   * @param {RTCPeerConnection} pc @param {number} delay
   */
  _restartIceSoon(pc, delay) {
    if (this._iceRestartTimer !== undefined) return;
    this._iceRestartTimer = window.setTimeout(() => {
      this._iceRestartTimer = undefined;
      if (this.peerConnection !== pc || pc.connectionState === 'connected') return;
      this.iceRestarts += 1;
      pc.restartIce();
      this._negotiate().catch(console.error);
      this._restartIceSoon(pc, ICE_RESTART_EVERY_MS);
    }, delay);
  }

  /** The network changed (back online, a new interface): look for a new path now. */
  _networkChanged() {
    const pc = this.peerConnection;
    if (!pc || pc.connectionState === 'closed') return;
    window.clearTimeout(this._iceRestartTimer);
    this._iceRestartTimer = undefined;
    this._restartIceSoon(pc, 0);
  }

  /**
   * Every transceiver gets the SFrame transform before it carries a frame.
   * Video is VP8: H.264's packetiser reads NAL unit headers that SFrame would hide.
   * @param {RTCPeerConnection} pc @param {MediaStreamTrack | string} trackOrKind
   * @param {string} kind @param {RTCRtpTransceiverDirection} direction
   */
  _addSendTransceiver(pc, trackOrKind, kind, direction) {
    // Fixed when the transceiver is made: a camera turned on later uses these too.
    const sendEncodings = kind === 'camera' ? cameraEncodings() : undefined;
    const transceiver = pc.addTransceiver(trackOrKind, { direction, sendEncodings });
    transceiver.sender.transform = new RTCRtpScriptTransform(this._worker, { operation: 'encrypt', kind });
    preferVp8(transceiver);
    return transceiver;
  }

  /** @param {RTCPeerConnection} pc @param {string} mediaKind */
  _addReceiveSlot(pc, mediaKind) {
    const transceiver = pc.addTransceiver(mediaKind, { direction: 'recvonly' });
    const slot = String((this._slotCounter += 1));
    transceiver.receiver.transform = new RTCRtpScriptTransform(this._worker,
      { operation: 'decrypt', kind: mediaKind, slot });
    preferVp8(transceiver);
    /** @type {ReceiveSlot} */
    const entry = { transceiver, mediaKind, streamId: null, shown: null, slot, senderId: -1 };
    this._receiving.push(entry);
    return entry;
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
    for (const slot of this._receiving) {
      // A stream relabelled with another participant: its frames are still the old sender's.
      const stream = slot.streamId ? wanted.get(slot.streamId) : undefined;
      const expected = (stream && this.participants.get(stream.participant)?.peer?.senderId) ?? -1;
      if (stream && expected !== slot.senderId) this._bindSlot(slot);
    }
    const assigned = new Set(this._receiving.map((s) => s.streamId));
    for (const stream of this._streams) {
      if (assigned.has(stream.id)) continue;
      const mediaKind = mediaKindOf(stream.kind);
      let slot = this._receiving.find((s) => !s.streamId && !s.shown && s.mediaKind === mediaKind);
      if (!slot) slot = this._addReceiveSlot(pc, mediaKind);
      // Until the answer is in, the frames of the stream it had may still arrive.
      const before = slot.senderId;
      slot.streamId = stream.id;
      slot.transceiver.direction = 'recvonly';
      this._bindSlot(slot, before);
    }
  }

  /**
   * Tell the frame transform whose frames a slot may show: the sender id of the
   * participant its stream is labelled with (-1: none verified), and `alsoFor`
   * while the slot changes hands. @param {ReceiveSlot} slot @param {number} [alsoFor]
   */
  _bindSlot(slot, alsoFor = -1) {
    const stream = this._streams.find((s) => s.id === slot.streamId);
    slot.senderId = (stream && this.participants.get(stream.participant)?.peer?.senderId) ?? -1;
    this._worker.postMessage({ type: 'slot-senders', slot: slot.slot, senderIds: [slot.senderId, alsoFor] });
  }

  /** A participant's keys changed (verified, or gone): their tiles' slots follow. @param {string} participantId */
  _rebindSlotsOf(participantId) {
    for (const slot of this._receiving) {
      const stream = this._streams.find((s) => s.id === slot.streamId);
      if (stream?.participant === participantId) this._bindSlot(slot);
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
    /** @type {(sdp: string | null) => void} */
    let waiter = () => {};
    /** @type {Promise<string | null>} */
    const answer = new Promise((resolve) => { waiter = resolve; });
    this._answerWaiter = waiter;
    this._send({ type: 'offer', sdp: pc.localDescription?.sdp, mids });
    const sdp = await answer;
    if (this._answerWaiter === waiter) this._answerWaiter = null;
    if (sdp === null || this.peerConnection !== pc) return;
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
        // The previous stream's last frames have had their time: only this sender now.
        window.setTimeout(() => { if (slot.streamId === stream.id) this._bindSlot(slot); }, SLOT_HANDOVER_MS);
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
      this._sending.screen = this._addSendTransceiver(pc, track, 'screen', 'sendonly');
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

  /**
   * What the page shows of each stream it receives: stream id to the tile's height in
   * device pixels, 0 off screen. The SFU sends each camera at the smallest layer that
   * fills its tile, and none to a tile nobody sees. Sent when it changes, at most every
   * VIEW_INTERVAL_MS. @param {Record<string, number>} tiles
   */
  setView(tiles) {
    this._view = tiles;
    if (this._viewTimer !== undefined) return;
    this._viewTimer = window.setTimeout(() => {
      this._viewTimer = undefined;
      const text = JSON.stringify(this._view);
      if (text === this._viewSent || !this._selfId || this._socket?.readyState !== WebSocket.OPEN) return;
      this._viewSent = text;
      this._send({ type: 'view', tiles: this._view });
    }, VIEW_INTERVAL_MS);
  }

  /**
   * The SFU says which layers of a simulcast source someone receives: the encoder
   * pauses the others. @param {string} kind @param {unknown} active
   */
  async _setActiveLayers(kind, active) {
    const sender = this._sending[kind]?.sender;
    if (!sender || !Array.isArray(active)) return;
    const parameters = sender.getParameters();
    if (parameters.encodings.length !== active.length) return;
    let changed = false;
    parameters.encodings.forEach((encoding, index) => {
      if (encoding.active !== Boolean(active[index])) {
        encoding.active = Boolean(active[index]);
        changed = true;
      }
    });
    if (changed) await sender.setParameters(parameters);
  }

  /** @param {string} id @param {string} profile */
  async _knock(id, profile) {
    let name = 'Unverified guest';
    let verified = false;
    let identity = '';
    try {
      const peer = await /** @type {MeetingKeys} */ (this.keys).openAnnouncement(profile);
      name = peer.name.slice(0, 64) || 'Guest';
      identity = b64url(peer.sPublic);
      verified = true;
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
    }
    this.knocks.set(id, { name, verified, identity });
    this.onknock({ id, name, verified });
  }

  /**
   * The co-hosts the host named, each by a host-signed `cohost` action: so a newcomer
   * accepts their actions, and a co-host who comes back is a co-host again.
   * @param {any[]} delegations
   */
  async _takeDelegations(delegations) {
    const mine = b64url(this.keys?.sPublic ?? new Uint8Array());
    for (const signed of delegations.slice(0, 64)) {
      const named = await verifySigned(signed, this.meetingId, this.hostHash);
      if (!named?.byHost || named.kind !== 'cohost' || typeof named.params?.key !== 'string') continue;
      this._cohostKeys.add(named.params.key);
      if (named.params.key === mine) this.isCohost = true;
    }
  }

  /** My admission pass: kept for reconnects, and with the identity for reloads. @param {any} pass */
  _takePass(pass) {
    if (this._pass?.action === pass.action) return;
    this._pass = pass;
    keepPass(this.meetingId, pass).catch(console.error);
  }

  /**
   * The policy in force, on the host's signature alone (the server's word counts
   * for nothing). Without a signed policy: the defaults, lobby on.
   * @param {any} signed @param {boolean} hasHost
   */
  async _takeSignedPolicy(signed, hasHost) {
    if (!signed) {
      if (!this._policyVersion) this.policy = { locked: false, lobby: true, screen_share: 'host', chat: true, has_host: hasHost };
      return;
    }
    const policy = policyOf(await verifySigned(signed, this.meetingId, this.hostHash));
    if (!policy) {
      this.onsecurityalert({ participantId: null, message: 'The meeting policy the server gave is not signed by the host: ignored, possible attack' });
      return;
    }
    this._applyPolicy(policy);
    this.policy.has_host = hasHost;
  }

  /**
   * Take a signed policy unless it is older than the one in force here.
   * @param {{v: number, locked: boolean, lobby: boolean, screen: string, chat: boolean} | null} policy
   */
  _applyPolicy(policy) {
    if (!policy) {
      this.onsecurityalert({ participantId: null, message: 'A host action without a whole policy was ignored' });
      return false;
    }
    if (policy.v < this._policyVersion) {
      this.onsecurityalert({ participantId: null, message: 'An older meeting policy was ignored (rolled back by the server?): possible attack' });
      return false;
    }
    this._policyVersion = policy.v;
    this.policy = { ...this.policy, locked: policy.locked, lobby: policy.lobby, screen_share: policy.screen, chat: policy.chat };
    return true;
  }

  /**
   * As the host: sign the whole policy with one change and the next version.
   * Before the door closes (lock, or the lobby back on), everyone here without a
   * pass gets one, so that they come back after a reconnect, and newcomers accept them.
   * @param {string} kind @param {{locked?: boolean, lobby?: boolean, screen?: string, chat?: boolean}} change
   */
  async _setPolicy(kind, change) {
    const next = { v: this._policyVersion + 1, locked: this.policy.locked, lobby: this.policy.lobby,
      screen: this.policy.screen_share, chat: this.policy.chat, ...change };
    if (next.locked || next.lobby) await this._issuePasses();
    await this.hostAct(kind, null, { policy: next });
  }

  /** Passes for everyone here (verified) who came in without one, while the lobby was off. */
  async _issuePasses() {
    for (const [id, person] of this.participants) {
      if (person.peer && !person.admitted) {
        await this.hostAct('admit', id);
        person.admitted = true;
      }
    }
  }

  /** Check a relayed host action (see _checkHostAction), then act on it. @param {any} message */
  async _receiveHostAction(message) {
    const action = await this._checkHostAction(message);
    if (!action) return;
    const { kind, target, params } = action;
    if (kind === 'rekey-link' && action.signer !== this._ownSigner()) this._expectedLinkHash = String(params.secret_hash ?? '');
    if (kind === 'cohost') this._cohostKeys.add(String(params.key));
    if (kind === 'revoke-cohost') this._cohostKeys.delete(String(params.identity ?? ''));
    if (target === this._selfId && (kind === 'cohost' || kind === 'revoke-cohost')) this.isCohost = kind === 'cohost';
    if (POLICY_KINDS.has(kind) && !this._applyPolicy(policyOf(action))) return;
    if (kind === 'admit') this._revoked.delete(String(params.identity));
    if (kind === 'admit' && params.identity === b64url(this.keys?.sPublic ?? new Uint8Array())) {
      // A pass for me, issued while I am here (the host locks, or turns the lobby on).
      this._takePass({ action: message.action, signature: message.signature,
        ...(message.delegation ? { delegation: message.delegation } : {}) });
    }
    if (kind === 'remove' && typeof params.identity === 'string' && params.identity) {
      this._revoked.add(params.identity);
      if (params.block === true) this._blocked.add(params.identity);
    }
    if (kind === 'end') this._signedDismissal = 'end';
    if (target === this._selfId) {
      // Honour the host: the SFU has stopped forwarding this anyway.
      if (kind === 'mute') this.setMicrophoneEnabled(false);
      if (kind === 'stop-screen') await this.stopScreenShare();
      if (kind === 'remove') {
        this._signedDismissal = 'remove';
        // The host took my admission back: coming back means the lobby (or, blocked, nothing).
        this._pass = null;
        keepPass(this.meetingId, null).catch(console.error);
      }
    }
    this.onpolicy();
    this.onhostaction({ kind, target, params, by: this._signerName(action), byHost: action.byHost });
    if (kind === 'remove' && target !== this._selfId && this.participants.has(target)) {
      // Whatever the server does with them: their keys go, and ours change.
      await this._forgetParticipant(target, 'removed');
    }
  }

  /**
   * A relayed host action, checked: signed by the host (or a co-host the host named)
   * for this meeting, fresh, not seen before, in its signer's order, and naming as
   * its target the person this page shows under that id. Otherwise null, and the
   * page raises the possible-attack alert. @param {any} message
   */
  async _checkHostAction(message) {
    const action = await verifyAction(String(message.action), String(message.signature), this.hostHash,
      this._cohostKeys);
    let problem = '';
    if (!action || action.meeting !== this.meetingId) {
      problem = 'that the host did not sign';
    } else {
      const refused = this._actionGuard.check(action, Date.now());
      if (refused) problem = ACTION_REFUSED[refused] ?? refused;
      else if (!this._namesItsTarget(action)) problem = 'aimed at someone other than the person it names';
    }
    if (problem) {
      this.onsecurityalert({ participantId: null, message: `A host action ${problem} was ignored: possible attack` });
      return null;
    }
    return action;
  }

  /**
   * Whether a person-targeted action's signed identity key is that of the person
   * this page knows under the target id (the server chooses ids, so it could
   * otherwise aim an action at someone else). @param {any} action
   */
  _namesItsTarget(action) {
    if (!PERSON_TARGETED.has(action.kind)) return true;
    const named = typeof action.params?.identity === 'string' ? action.params.identity : '';
    if (action.target === this._selfId) return Boolean(this.keys) && named === b64url(/** @type {MeetingKeys} */ (this.keys).sPublic);
    const person = this.participants.get(action.target);
    if (!person) return true; // gone already: there is nobody here to act on
    return named === (person.peer ? b64url(person.peer.sPublic) : '');
  }

  /**
   * The signed action a dismissal carries ('ended', 'removed', 'denied'): it counts
   * only if it checks out and names this person. @param {any} message @param {string} kind
   */
  async _checkDismissal(message, kind) {
    const action = await this._checkHostAction(message);
    if (!action || action.kind !== kind) return;
    const mine = this.keys ? b64url(this.keys.sPublic) : '';
    if (kind === 'end' || action.params?.identity === mine) this._signedDismissal = kind;
  }

  /** This page's own signing keys, as actions name their signer. */
  _ownSigner() {
    return this.hostKey ? b64url(this.hostKey.publicKey) : this.keys ? b64url(this.keys.sPublic) : '';
  }

  /** Who signed an action, as this page can tell from the key: not the server's word. @param {any} action */
  _signerName(action) {
    if (action.signer === this._ownSigner()) return 'You';
    if (action.byHost) return 'The host';
    const cohost = [...this.participants.values()].find((p) => p.peer && b64url(p.peer.sPublic) === action.signer);
    return cohost?.name ?? 'A co-host';
  }

  /**
   * The host re-keyed the link: the new secret must match the hash in the signed
   * rekey action, so neither the server nor another participant can plant one.
   * @param {Announcement} peer @param {string} body
   */
  async _receiveLinkSecret(peer, body) {
    try {
      const { secret } = JSON.parse(body);
      const linkSecret = await /** @type {MeetingKeys} */ (this.keys).openFrom(peer, 'link-secret', String(secret));
      if (!this._expectedLinkHash || await linkSecretHash(linkSecret) !== this._expectedLinkHash) {
        throw new E2eeError('a link secret the host did not announce');
      }
      await this._adoptLink(linkSecret);
    } catch (error) {
      if (!(error instanceof E2eeError) && !(error instanceof SyntaxError)) throw error;
      this.onsecurityalert({ participantId: null, message: `A new meeting link was refused (${error.message}): possible attack` });
    }
  }

  /** Take a new link secret: new join key and roster keys, same identity; announce again. @param {Uint8Array} linkSecret */
  async _adoptLink(linkSecret) {
    this._expectedLinkHash = '';
    this.linkSecret = linkSecret;
    this._joinKey = (await deriveJoinKey(linkSecret, this.meetingId)).privateKey;
    await /** @type {MeetingKeys} */ (this.keys).setLink(linkSecret);
    this._profile = await /** @type {MeetingKeys} */ (this.keys).announce(this._name);
    this._send({ type: 'profile', profile: this._profile });
    const waiting = this._waitingProfiles.splice(0);
    for (const { id, profile } of waiting) await this._updateProfile(id, profile);
    this.onlinkchanged(`${location.origin}/m/${this.meetingId}#${b64url(linkSecret)}.${b64url(this.hostHash)}`);
  }

  /** Someone announced again (after a rekey): same keys, new roster MAC. @param {string} id @param {string} profile */
  async _updateProfile(id, profile) {
    const person = this.participants.get(id);
    if (!person || !this.keys) return;
    try {
      const peer = await this.keys.openAnnouncement(profile);
      // Announcing again only renames: same identity, same sender id, checked as before.
      if (!person.peer || toKey(person.peer.identity) !== toKey(peer.identity)
        || person.peer.senderId !== peer.senderId || toKey(person.peer.commitment) !== toKey(peer.commitment)) {
        throw new E2eeError('a participant announced other keys');
      }
      person.peer = peer;
      person.name = peer.name.trim().slice(0, 64) || person.name;
      this._rebindSlotsOf(id);
    } catch (error) {
      if (!(error instanceof E2eeError)) throw error;
      if (this._expectedLinkHash) { this._waitingProfiles.push({ id, profile }); return; }
      this.onsecurityalert({ participantId: id, message: `A participant's new announcement failed (${error.message})` });
    }
  }

  /** As the host: a new link secret for everyone still here, so the old link stops working. */
  async rekeyLink() {
    if (!this.isHost || !this.keys) throw new Error('only the host can change the link');
    const linkSecret = crypto.getRandomValues(new Uint8Array(32));
    const { publicKey } = await deriveJoinKey(linkSecret, this.meetingId);
    await this.hostAct('rekey-link', null,
      { join_key: b64url(publicKey), secret_hash: await linkSecretHash(linkSecret) });
    for (const [id, person] of this.participants) {
      if (!person.peer) continue;
      const secret = await this.keys.sealFor(person.peer, 'link-secret', linkSecret);
      this._send({ type: 'relay', to: id, body: JSON.stringify({ t: 'link-secret', secret }) });
    }
    await this._adoptLink(linkSecret);
  }

  /** @param {string} id */
  async removeAndRekey(id) {
    await this.remove(id);
    // Forget them here before the new link goes out, so it is never sealed for them,
    // whatever the server does with the removal.
    await this._forgetParticipant(id, 'removed');
    await this.rekeyLink();
  }

  /** Whether this person may act as host (the host, or a co-host the host named). */
  get canModerate() { return this.isHost || this.isCohost; }

  get canShareScreen() { return this.policy.screen_share === 'everyone' || this.canModerate; }

  /** Sign a host action with the host key (or, for a co-host, its identity key) and send it. @param {string} kind @param {string | null} [target] @param {object} [params] */
  async hostAct(kind, target = null, params = {}) {
    if (target !== null && (PERSON_TARGETED.has(kind) || kind === 'admit' || kind === 'deny')) {
      // Name the person by their key too: the server picks ids, and could re-aim them.
      params = { ...params, identity: this._identityOf(target) };
    }
    let signed;
    if (this.isHost && this.hostKey) {
      signed = await signAction(this.hostKey.privateKey, this.hostKey.publicKey, { meeting: this.meetingId, kind, target, params });
    } else if (this.isCohost && this.keys?.signingKey) {
      signed = await signAction(this.keys.signingKey, this.keys.sPublic, { meeting: this.meetingId, kind, target, params });
    } else {
      throw new Error('only the host can do that');
    }
    this._send({ type: 'host-action', ...signed });
  }

  /** The identity key (base64url) of a person here or knocking, '' if unverified. @param {string} id */
  _identityOf(id) {
    if (id === this._selfId) return this.keys ? b64url(this.keys.sPublic) : '';
    const peer = this.participants.get(id)?.peer;
    return peer ? b64url(peer.sPublic) : this.knocks.get(id)?.identity ?? '';
  }

  /** @param {string} id */ admit(id) { return this.hostAct('admit', id); }
  /** @param {string} id */ deny(id) { return this.hostAct('deny', id); }
  /** @param {string} id */ remove(id) { return this.hostAct('remove', id); }
  /** @param {string} id */ mute(id) { return this.hostAct('mute', id); }
  /** @param {string} id */ stopCamera(id) { return this.hostAct('stop-camera', id); }
  /** @param {string} id */ stopScreen(id) { return this.hostAct('stop-screen', id); }
  /** @param {string} id */ allowUnmute(id) { return this.hostAct('allow-unmute', id); }
  /** @param {boolean} locked */ setLocked(locked) { return this._setPolicy(locked ? 'lock' : 'unlock', { locked }); }
  /** @param {boolean} on */ setLobby(on) { return this._setPolicy('lobby', { lobby: on }); }
  /** @param {{screen?: string, chat?: boolean}} permissions */ setPermissions(permissions) { return this._setPolicy('permissions', permissions); }
  /** Remove someone and keep their identity out, even of the lobby, for the rest of the meeting. @param {string} id */
  removeAndBlock(id) { return this.hostAct('remove', id, { block: true }); }
  endMeeting() { return this.hostAct('end'); }
  /** @param {string} id */
  makeCohost(id) {
    const peer = this.participants.get(id)?.peer;
    if (!peer) throw new Error('cannot name an unverified participant co-host');
    return this.hostAct('cohost', id, { key: b64url(peer.sPublic) });
  }
  /** @param {string} id */ revokeCohost(id) { return this.hostAct('revoke-cohost', id); }

  /** A link that gives the host role on another device: keep it private. */
  hostLink() {
    if (!this.hostKey) return null;
    return `${location.origin}/m/${this.meetingId}#${b64url(this.linkSecret)}.${b64url(this.hostHash)}.${b64url(this.hostKey.seed)}`;
  }

  /** @param {string} text */
  sendChat(text) {
    if (!this._sendKey.length) return;
    const trimmed = text.trim();
    if (!trimmed) return;
    sealChat(this._sendKid, this._chatSeq++, this._sendKey, trimmed)
      .then((body) => this._send({ type: 'chat', body }))
      .catch((error) => console.error('confide: chat not sent', error));
    this.onchat({ from: this._selfId, name: this._name, text: trimmed, time: Date.now(), self: true });
  }

  leave() {
    this._left = true;
    this._send({ type: 'leave' });
    this._socket?.close();
    this._teardown();
    this._dropStale();
    this.onstatus('ended', 'You left the meeting');
  }
}

/** How a refused host action is described in the possible-attack alert. @type {Record<string, string>} */
const ACTION_REFUSED = {
  'too old': 'that is too old',
  'from the future': 'dated in the future',
  replayed: 'that was already done once',
  'out of order': 'that came out of order',
};

const LOOPBACK_UNREACHABLE = 'Media cannot reach the server at its loopback address. Some browsers, '
  + 'Firefox among them, send no media to 127.0.0.1: open the meeting at the server\'s network address';

/** Whether every ICE candidate in an SDP is a loopback address. @param {string} sdp */
function onlyLoopback(sdp) {
  const addresses = [...sdp.matchAll(/^a=candidate:\S+ \d+ \S+ \d+ (\S+) /gm)].map((m) => m[1]);
  return addresses.length > 0 && addresses.every((a) => /^127\./.test(a) || a === '::1');
}

/** @param {Uint8Array} bytes */
const toKey = (bytes) => Array.from(bytes).join(',');

/** @param {RTCRtpTransceiver} transceiver */
function preferVp8(transceiver) {
  if (transceiver.receiver.track.kind !== 'video') return;
  const codecs = RTCRtpReceiver.getCapabilities('video')?.codecs ?? [];
  const vp8 = codecs.filter((c) => c.mimeType === 'video/VP8');
  if (vp8.length) transceiver.setCodecPreferences(vp8);
}
