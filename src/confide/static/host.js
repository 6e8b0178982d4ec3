// @ts-check
/**
 * The host's key and its signed actions (docs/design.md, 'Host authority'). No DOM.
 *
 * The creator's browser makes a random 32-byte host seed and keeps it in
 * IndexedDB; the Ed25519 host key comes from it. The meeting link carries a hash
 * of the host's public key after the link secret (`#S.H`), so every participant
 * knows which key is the host's; a host link adds the seed (`#S.H.SEED`) so the
 * creator can take the host role on another device. Host actions are JSON texts
 * signed with the host key, or with a co-host's identity key that the host named;
 * the server checks them before it acts and every client checks them again.
 * src/confide/rooms/moderation.py reads the same bytes.
 */

const encoder = new TextEncoder();
const DB_NAME = 'confide-host-keys';
const ED25519_PKCS8_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** @param {Uint8Array} bytes */
export function b64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** @param {string} text */
export function fromB64url(text) {
  const padded = text.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((text.length + 3) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/** An Ed25519 key pair from a 32-byte seed (RFC 8410 PKCS #8). @param {Uint8Array} seed */
export async function ed25519FromSeed(seed) {
  const pkcs8 = new Uint8Array(ED25519_PKCS8_PREFIX.length + seed.length);
  pkcs8.set(ED25519_PKCS8_PREFIX);
  pkcs8.set(seed, ED25519_PKCS8_PREFIX.length);
  const privateKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', privateKey);
  return { privateKey, publicKey: fromB64url(/** @type {string} */ (jwk.x)) };
}

/** The 16-byte hash of a host public key that the link carries. @param {Uint8Array} publicKey */
export async function hostKeyHash(publicKey) {
  const input = new Uint8Array([...encoder.encode('confide/1 host-key|'), ...publicKey]);
  return new Uint8Array(await crypto.subtle.digest('SHA-256', input)).subarray(0, 16);
}

export class HostKey {
  /** @param {Uint8Array} seed @param {CryptoKey} privateKey @param {Uint8Array} publicKey */
  constructor(seed, privateKey, publicKey) {
    this.seed = seed;
    this.privateKey = privateKey;
    this.publicKey = publicKey;
  }

  static async generate() {
    return HostKey.fromSeed(crypto.getRandomValues(new Uint8Array(32)));
  }

  /** @param {Uint8Array} seed */
  static async fromSeed(seed) {
    const { privateKey, publicKey } = await ed25519FromSeed(seed);
    return new HostKey(seed, privateKey, publicKey);
  }

  /** Sign the challenge of this connection to prove the host role. @param {string} meetingId @param {Uint8Array} nonce */
  async proveHost(meetingId, nonce) {
    const message = new Uint8Array([...encoder.encode(`confide/1 host|${meetingId}|`), ...nonce]);
    return new Uint8Array(await crypto.subtle.sign('Ed25519', this.privateKey, message));
  }
}

/** @param {IDBRequest} request */
const done = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

async function database() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore('seeds');
  return /** @type {IDBDatabase} */ (await done(request));
}

/** Keep the host seed on this device, under the meeting id. @param {string} meetingId @param {Uint8Array} seed */
export async function storeHostSeed(meetingId, seed) {
  const db = await database();
  await done(db.transaction('seeds', 'readwrite').objectStore('seeds').put(seed, meetingId));
  db.close();
}

/** @param {string} meetingId @returns {Promise<Uint8Array | null>} */
export async function loadHostSeed(meetingId) {
  try {
    const db = await database();
    const seed = await done(db.transaction('seeds').objectStore('seeds').get(meetingId));
    db.close();
    return seed instanceof Uint8Array ? seed : null;
  } catch {
    return null; // private browsing without IndexedDB: this device is simply not the host
  }
}

/**
 * Sign a host action. @param {CryptoKey} privateKey @param {Uint8Array} signerPublic
 * @param {{meeting: string, kind: string, target?: string | null, params?: object}} action
 */
export async function signAction(privateKey, signerPublic, { meeting, kind, target = null, params = {} }) {
  const text = JSON.stringify({ v: 1, meeting, kind, target, params, time: Date.now(),
    nonce: b64url(crypto.getRandomValues(new Uint8Array(12))), signer: b64url(signerPublic) });
  const signature = new Uint8Array(await crypto.subtle.sign('Ed25519', privateKey,
    encoder.encode(`confide/1 host-action|${text}`)));
  return { action: text, signature: b64url(signature) };
}

/** How old (or how far ahead of this clock) a host action may be: as the server's. */
export const ACTION_MAX_AGE_MS = 5 * 60 * 1000;

/** Kinds whose target is a person in the meeting: the action names their identity key too. */
export const PERSON_TARGETED = new Set(['remove', 'mute', 'allow-unmute', 'stop-camera', 'stop-screen',
  'cohost', 'revoke-cohost']);

/** Kinds only the host may sign, never a co-host (the server refuses them too). */
const HOST_ONLY = new Set(['cohost', 'revoke-cohost', 'rekey-link']);

/**
 * Refuses host actions the server replays or reorders: each is accepted once,
 * while fresh, and a signer's actions only in the order they were signed. No DOM.
 */
export class ActionGuard {
  constructor() {
    /** Nonces of accepted actions and their times, kept while they would be fresh. @type {Map<string, number>} */
    this._seen = new Map();
    /** The time of the last action accepted from each signer. @type {Map<string, number>} */
    this._lastBySigner = new Map();
  }

  /**
   * Why an action must be refused ('too old', 'from the future', 'replayed', 'out of
   * order'), or '' when it is accepted, and then remembered.
   * @param {{time: number, nonce: string, signer: string}} action @param {number} now ms
   */
  check(action, now) {
    if (typeof action.time !== 'number' || now - action.time > ACTION_MAX_AGE_MS) return 'too old';
    if (action.time - now > ACTION_MAX_AGE_MS) return 'from the future';
    if (this._seen.has(action.nonce)) return 'replayed';
    if (action.time < (this._lastBySigner.get(action.signer) ?? -Infinity)) return 'out of order';
    for (const [nonce, time] of this._seen) {
      if (now - time > ACTION_MAX_AGE_MS) this._seen.delete(nonce);
    }
    this._seen.set(action.nonce, action.time);
    this._lastBySigner.set(action.signer, action.time);
    return '';
  }
}

/**
 * Check a relayed host action: signed by the host whose hash the link carries, or
 * by a co-host the host named. Returns the parsed action, or null if it fails.
 * @param {string} text @param {string} signature @param {Uint8Array} hostHash
 * @param {Set<string>} cohostKeys base64url keys named by verified 'cohost' actions
 */
export async function verifyAction(text, signature, hostHash, cohostKeys) {
  try {
    const action = JSON.parse(text);
    const signer = fromB64url(action.signer);
    const isHost = b64url(await hostKeyHash(signer)) === b64url(hostHash);
    if (!isHost && (!cohostKeys.has(action.signer) || HOST_ONLY.has(action.kind))) {
      return null;
    }
    const key = await crypto.subtle.importKey('raw', signer, { name: 'Ed25519' }, false, ['verify']);
    const ok = await crypto.subtle.verify('Ed25519', key, fromB64url(signature),
      encoder.encode(`confide/1 host-action|${text}`));
    return ok ? { ...action, byHost: isHost } : null;
  } catch {
    return null;
  }
}

/** Kinds that set the meeting policy; each carries the whole policy and its version. */
export const POLICY_KINDS = new Set(['lock', 'unlock', 'lobby', 'permissions']);

/**
 * A signed action as it travels ({action, signature, delegation?}), checked: by the
 * host, or by a co-host whose delegation (a host-signed `cohost` action naming the
 * signer's key) travels with it. Returns the parsed action, or null.
 * @param {any} signed @param {string} meetingId @param {Uint8Array} hostHash
 */
export async function verifySigned(signed, meetingId, hostHash) {
  if (!signed || typeof signed.action !== 'string' || typeof signed.signature !== 'string') return null;
  /** @type {Set<string>} */
  let cohosts = new Set();
  if (signed.delegation) {
    const named = await verifySigned({ action: signed.delegation.action, signature: signed.delegation.signature },
      meetingId, hostHash);
    if (!named?.byHost || named.kind !== 'cohost') return null;
    cohosts = new Set([String(named.params?.key)]);
  }
  const action = await verifyAction(signed.action, signed.signature, hostHash, cohosts);
  return action && action.meeting === meetingId ? action : null;
}

/**
 * Whether a pass (rooms/admission.py) lets the person with this identity key
 * (base64url) in: a signed admit naming it. @param {any} pass @param {string} meetingId
 * @param {Uint8Array} hostHash @param {string} identity
 */
export async function passAdmits(pass, meetingId, hostHash, identity) {
  const admit = await verifySigned(pass, meetingId, hostHash);
  return Boolean(admit && admit.kind === 'admit' && identity && admit.params?.identity === identity);
}

/**
 * The whole policy a policy action carries, if it is well formed.
 * @param {any} action @returns {{v: number, locked: boolean, lobby: boolean, screen: string, chat: boolean} | null}
 */
export function policyOf(action) {
  const policy = action?.params?.policy;
  if (!action || !POLICY_KINDS.has(action.kind) || !policy || !Number.isSafeInteger(policy.v) || policy.v < 1) return null;
  if (![policy.locked, policy.lobby, policy.chat].every((b) => typeof b === 'boolean')) return null;
  if (policy.screen !== 'host' && policy.screen !== 'everyone') return null;
  return { v: policy.v, locked: policy.locked, lobby: policy.lobby, screen: policy.screen, chat: policy.chat };
}
