// @ts-check
/**
 * The keys of one meeting (docs/design.md, 'The key schedule'), in the main thread. No DOM.
 *
 * - From the link secret S: the roster key, which MACs each participant's key
 *   announcement and encrypts display names. The server never learns S.
 * - Per participant and meeting: an X25519 key (agreement) and an Ed25519 key
 *   (signatures), made fresh here and never exported privately.
 * - Per sender: a sender key with an epoch; KID = sender id * 256 + epoch % 256.
 *   Sender keys travel pairwise: X25519, then HKDF, then AES-GCM.
 * - Chat: AES-GCM under a key derived from the sender's current sender key.
 *
 * src/confide/e2ee/keys.py computes the same bytes in Python.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();
export const LABEL = 'confide/1 ';

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

/** @param {string} text */
export function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** @param {...Uint8Array} parts */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) { out.set(part, offset); offset += part.length; }
  return out;
}

/** @param {Uint8Array} a @param {Uint8Array} b */
function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/**
 * HKDF-SHA-256 (RFC 5869) to `length` bytes.
 * @param {Uint8Array} secret @param {Uint8Array} salt @param {string | Uint8Array} info @param {number} length
 */
export async function hkdf(secret, salt, info, length = 32) {
  const key = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const infoBytes = typeof info === 'string' ? encoder.encode(info) : info;
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: infoBytes }, key, length * 8);
  return new Uint8Array(bits);
}

/** @param {Uint8Array} raw */
function aesKey(raw) {
  return crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/** AES-GCM with a random 12-byte IV; returns iv || ciphertext. @param {CryptoKey} key @param {Uint8Array} plaintext @param {Uint8Array} aad */
export async function seal(key, plaintext, aad) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ciphertext = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, plaintext);
  return concat(iv, new Uint8Array(ciphertext));
}

/** @param {CryptoKey} key @param {Uint8Array} sealed @param {Uint8Array} aad */
export async function open(key, sealed, aad) {
  if (sealed.length < 12 + 16) throw new E2eeError('sealed blob is too short');
  try {
    const plaintext = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: sealed.subarray(0, 12), additionalData: aad }, key, sealed.subarray(12));
    return new Uint8Array(plaintext);
  } catch {
    throw new E2eeError('blob failed to decrypt');
  }
}

/** Something a peer or the server sent that fails its MAC, signature or decryption. */
export class E2eeError extends Error {}

/** The next sender key when someone joins: one-way, so a newcomer cannot go back. @param {Uint8Array} senderKey */
export function ratchet(senderKey) {
  return hkdf(senderKey, new Uint8Array(0), `${LABEL}ratchet`);
}

/** @param {number} senderId @param {number} epoch */
export const kidOf = (senderId, epoch) => senderId * 256 + (epoch % 256);

const CODE_GROUPS = 5;
const CODE_GROUP = 100000;
/** Largest multiple of 10^5 below 2^24: 3-byte values at or above it are skipped, so every group is uniform. */
const CODE_LIMIT = Math.floor(2 ** 24 / CODE_GROUP) * CODE_GROUP;

/**
 * The meeting security code: five groups of five digits (83 bits, unbiased), e.g.
 * "04721 93310 58802 11467 30025", over the meeting id and, for everyone present,
 * their identity key (Ed25519 public) followed by their code reveal, in any order.
 * Equal on every screen only if the server substituted no key. Digits come from
 * SHA-256 blocks by rejection sampling.
 * @param {string} meetingId @param {Uint8Array[]} identityKeys
 */
export async function securityCode(meetingId, identityKeys) {
  const sorted = [...identityKeys].sort(compareBytes);
  const seed = new Uint8Array(await crypto.subtle.digest('SHA-256',
    concat(encoder.encode(`${LABEL}security-code|${meetingId}|`), ...sorted)));
  const groups = [];
  for (let block = 0; groups.length < CODE_GROUPS; block += 1) {
    const bytes = new Uint8Array(await crypto.subtle.digest('SHA-256', concat(seed, Uint8Array.of(block))));
    for (let i = 0; i + 3 <= bytes.length && groups.length < CODE_GROUPS; i += 3) {
      const value = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      if (value < CODE_LIMIT) groups.push(String(value % CODE_GROUP).padStart(5, '0'));
    }
  }
  return groups.join(' ');
}

/** One person's fingerprint, to compare out of band. @param {Uint8Array} identityKey */
export async function fingerprint(identityKey) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256',
    concat(encoder.encode(`${LABEL}fingerprint`), identityKey)));
  return Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, '0'))
    .join('').match(/.{4}/g)?.join(' ') ?? '';
}

/**
 * @typedef {{name: string, senderId: number, xPublic: Uint8Array, sPublic: Uint8Array,
 *   identity: Uint8Array, commitment: Uint8Array}} Announcement
 */

/** The roster MAC key and name key from the link secret. @param {Uint8Array} linkSecret @param {string} meetingId */
async function rosterKeys(linkSecret, meetingId) {
  const roster = await hkdf(linkSecret, encoder.encode(meetingId), `${LABEL}roster-key`);
  const macKey = await hkdf(roster, new Uint8Array(0), `${LABEL}roster-mac`);
  const nameKey = await aesKey(await hkdf(roster, new Uint8Array(0), `${LABEL}roster-names`));
  return { macKey, nameKey };
}

/** A short hash of a link secret, which a signed rekey action carries. @param {Uint8Array} linkSecret */
export async function linkSecretHash(linkSecret) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256',
    concat(encoder.encode(`${LABEL}link-secret|`), linkSecret)));
  return toBase64(digest.subarray(0, 16));
}

/**
 * What a liveness proof signs: the meeting, the challenge, who asked and who answers.
 * @param {string} meetingId @param {Uint8Array} challenge @param {Uint8Array} verifier @param {Uint8Array} prover
 */
function liveTranscript(meetingId, challenge, verifier, prover) {
  return concat(encoder.encode(`${LABEL}live|${meetingId}|`), challenge, verifier, prover);
}

export class MeetingKeys {
  /** @param {string} meetingId @param {Uint8Array} rosterMacKey @param {CryptoKey} nameKey */
  constructor(meetingId, rosterMacKey, nameKey) {
    this.meetingId = meetingId;
    this._macKey = crypto.subtle.importKey('raw', rosterMacKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    this._nameKey = nameKey;
    /** @type {CryptoKeyPair | null} */ this._agreement = null;
    /** @type {CryptoKeyPair | null} */ this._signing = null;
    this.xPublic = new Uint8Array(0);
    this.sPublic = new Uint8Array(0);
    /** The identity's code reveal (codeCommitment). */
    this.reveal = new Uint8Array(16);
    this.senderId = 0;
    /** @type {Map<string, Promise<CryptoKey>>} pairwise keys by peer X25519 key */
    this._pairwise = new Map();
  }

  /** @param {Uint8Array} linkSecret @param {string} meetingId */
  static async fromLink(linkSecret, meetingId) {
    const { macKey, nameKey } = await rosterKeys(linkSecret, meetingId);
    return new MeetingKeys(meetingId, macKey, nameKey);
  }

  /** The host changed the link: keep this identity, take the new roster keys. @param {Uint8Array} linkSecret */
  async setLink(linkSecret) {
    const { macKey, nameKey } = await rosterKeys(linkSecret, this.meetingId);
    this._macKey = crypto.subtle.importKey('raw', macKey, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
    this._nameKey = nameKey;
  }

  /** Seal a secret for one peer under our pairwise key, bound to `label`. @param {Announcement} peer @param {string} label @param {Uint8Array} secret */
  async sealFor(peer, label, secret) {
    return toBase64(await seal(await this._pairwiseKey(peer.xPublic), secret,
      concat(encoder.encode(`${LABEL}${label}|`), this.xPublic, peer.xPublic)));
  }

  /** @param {Announcement} peer @param {string} label @param {string} sealed */
  async openFrom(peer, label, sealed) {
    let bytes;
    try { bytes = fromBase64(sealed); } catch { throw new E2eeError('sealed secret is not base64'); }
    return open(await this._pairwiseKey(peer.xPublic), bytes,
      concat(encoder.encode(`${LABEL}${label}|`), peer.xPublic, this.xPublic));
  }

  /** A fresh identity (tests and pages without a stored one). */
  async newIdentity() {
    await this.useIdentity(/** @type {CryptoKeyPair} */ (await crypto.subtle.generateKey(
      { name: 'Ed25519' }, false, ['sign', 'verify'])), crypto.getRandomValues(new Uint8Array(16)));
  }

  /**
   * Take this browser's identity for the meeting (identity.js keeps it across
   * reconnects and reloads), with fresh keys for this connection.
   * @param {CryptoKeyPair} signing @param {Uint8Array} reveal what its announcements commit to
   */
  async useIdentity(signing, reveal) {
    this._signing = signing;
    this.reveal = reveal;
    this.sPublic = new Uint8Array(await crypto.subtle.exportKey('raw', signing.publicKey));
    await this.newConnectionKeys();
  }

  /**
   * Per connection: a fresh X25519 key, so pairwise keys (and the sender keys they
   * wrapped) last one connection, and a fresh sender id.
   */
  async newConnectionKeys() {
    this._agreement = /** @type {CryptoKeyPair} */ (await crypto.subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']));
    this.xPublic = new Uint8Array(await crypto.subtle.exportKey('raw', this._agreement.publicKey));
    // 24 random bits name this sender in every frame's KID.
    this.senderId = (crypto.getRandomValues(new Uint32Array(1))[0] >>> 8) || 1;
    this._pairwise.clear();
  }

  /**
   * Sign this connection's identity challenge (hello's identity_proof), as
   * rooms/admission.py checks it. @param {Uint8Array} nonce
   */
  async proveIdentity(nonce) {
    if (!this._signing) throw new Error('no identity yet');
    const message = concat(encoder.encode(`${LABEL}identity|${this.meetingId}|`), nonce);
    return new Uint8Array(await crypto.subtle.sign('Ed25519', this._signing.privateKey, message));
  }

  /** The key the security code and fingerprints cover: the same for the whole meeting. */
  get identity() { return this.sPublic; }

  /** This identity's Ed25519 signing key: a co-host signs host actions with it. */
  get signingKey() { return this._signing?.privateKey ?? null; }

  /**
   * Prove this identity is here now: a signature over a fresh challenge that a
   * member (`verifier`, their Ed25519 key) sent. A replayed announcement cannot
   * make one: its private key is gone with the page that made it.
   * @param {Uint8Array} challenge @param {Uint8Array} verifier
   */
  async proveLive(challenge, verifier) {
    if (!this._signing) throw new Error('no identity yet');
    // The connection's X25519 key too: an old announcement of this same person,
    // replayed, names an agreement key this page no longer has, and fails.
    const message = liveTranscript(this.meetingId, challenge, verifier, concat(this.sPublic, this.xPublic));
    return new Uint8Array(await crypto.subtle.sign('Ed25519', this._signing.privateKey, message));
  }

  /**
   * Whether `signature` proves `peer` answered my `challenge` just now.
   * @param {Announcement} peer @param {Uint8Array} challenge @param {Uint8Array} signature
   */
  async checkLive(peer, challenge, signature) {
    const key = await crypto.subtle.importKey('raw', peer.sPublic, { name: 'Ed25519' }, false, ['verify']);
    return crypto.subtle.verify('Ed25519', key, signature,
      liveTranscript(this.meetingId, challenge, this.sPublic, concat(peer.sPublic, peer.xPublic)));
  }

  /** @param {number} senderId @param {string} x @param {string} s @param {string} n @param {string} c */
  _transcript(senderId, x, s, n, c) {
    return encoder.encode(`${LABEL}announce|${this.meetingId}|${senderId}|${x}|${s}|${n}|${c}`);
  }

  /**
   * The commitment an announcement carries to its sender's code reveal: 16 secret
   * bytes, kept with the identity, that the security code covers and that go to a
   * member (sealed pairwise, with the liveness answer) only after that member's
   * own commitment arrived. A man in the middle must then choose his keys before
   * he can know the code they lead to, and cannot grind them to match.
   * @param {Uint8Array} sPublic @param {Uint8Array} reveal
   */
  async codeCommitment(sPublic, reveal) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256',
      concat(encoder.encode(`${LABEL}code-commit|${this.meetingId}|`), sPublic, reveal)));
  }

  /** The opaque `profile` sent in hello: keys, encrypted name, MAC, signature. @param {string} name */
  async announce(name) {
    if (!this._signing) throw new Error('no identity yet');
    const x = toBase64(this.xPublic);
    const s = toBase64(this.sPublic);
    const n = toBase64(await seal(this._nameKey, encoder.encode(name),
      concat(encoder.encode(`${LABEL}name`), this.xPublic, this.sPublic)));
    const c = toBase64(await this.codeCommitment(this.sPublic, this.reveal));
    const transcript = this._transcript(this.senderId, x, s, n, c);
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await this._macKey, transcript));
    const sig = new Uint8Array(await crypto.subtle.sign('Ed25519', this._signing.privateKey, transcript));
    return JSON.stringify({ v: 1, id: this.senderId, x, s, n, c, mac: toBase64(mac), sig: toBase64(sig) });
  }

  /**
   * Check someone's announcement and read their name. Throws E2eeError if the MAC
   * (made with the link secret, which the server lacks) or the signature fails.
   * @param {string} profile @returns {Promise<Announcement>}
   */
  async openAnnouncement(profile) {
    let parsed;
    try { parsed = JSON.parse(profile); } catch { throw new E2eeError('announcement is not JSON'); }
    const { v, id, x, s, n, c, mac, sig } = parsed ?? {};
    if (v !== 1 || !Number.isInteger(id) || id < 1 || id >= 2 ** 24
        || ![x, s, n, c, mac, sig].every((f) => typeof f === 'string')) {
      throw new E2eeError('announcement is malformed');
    }
    const transcript = this._transcript(id, x, s, n, c);
    let xPublic; let sPublic; let macBytes; let sigBytes; let sealedName; let commitment;
    try {
      [xPublic, sPublic, macBytes, sigBytes, sealedName, commitment] = [x, s, mac, sig, n, c].map(fromBase64);
    } catch { throw new E2eeError('announcement is not base64'); }
    if (xPublic.length !== 32 || sPublic.length !== 32 || commitment.length !== 32) {
      throw new E2eeError('announcement keys are malformed');
    }
    if (!await crypto.subtle.verify('HMAC', await this._macKey, macBytes, transcript)) {
      throw new E2eeError('announcement MAC does not match the meeting link');
    }
    const verifyKey = await crypto.subtle.importKey('raw', sPublic, { name: 'Ed25519' }, false, ['verify']);
    if (!await crypto.subtle.verify('Ed25519', verifyKey, sigBytes, transcript)) {
      throw new E2eeError('announcement signature does not match its key');
    }
    const name = decoder.decode(await open(this._nameKey, sealedName,
      concat(encoder.encode(`${LABEL}name`), xPublic, sPublic)));
    // A low-order X25519 key gives no shared secret: refuse it here, not mid key delivery.
    await this._pairwiseKey(xPublic);
    return { name, senderId: id, xPublic, sPublic, identity: sPublic, commitment };
  }

  /** @param {Uint8Array} peerX */
  _pairwiseKey(peerX) {
    const tag = toBase64(peerX);
    let key = this._pairwise.get(tag);
    if (!key) {
      key = (async () => {
        if (!this._agreement) throw new Error('no identity yet');
        let shared;
        try {
          const peer = await crypto.subtle.importKey('raw', peerX, { name: 'X25519' }, false, []);
          shared = new Uint8Array(await crypto.subtle.deriveBits({ name: 'X25519', public: peer }, this._agreement.privateKey, 256));
        } catch {
          this._pairwise.delete(tag);
          throw new E2eeError('peer key gives no shared secret');
        }
        const [first, second] = [this.xPublic, peerX].sort(compareBytes);
        const info = concat(encoder.encode(`${LABEL}pairwise`), first, second);
        return aesKey(await hkdf(shared, encoder.encode(this.meetingId), info));
      })();
      this._pairwise.set(tag, key);
    }
    return key;
  }

  /** @param {Uint8Array} fromX @param {Uint8Array} toX @param {number} kid */
  _senderKeyAad(fromX, toX, kid) {
    return concat(encoder.encode(`${LABEL}sender-key|${kid}|`), fromX, toX);
  }

  /** Wrap my sender key for one peer: the opaque relay body. @param {Announcement} peer @param {number} kid @param {Uint8Array} senderKey */
  async wrapSenderKey(peer, kid, senderKey) {
    const sealed = await seal(await this._pairwiseKey(peer.xPublic), senderKey,
      this._senderKeyAad(this.xPublic, peer.xPublic, kid));
    return JSON.stringify({ t: 'sender-key', kid, key: toBase64(sealed) });
  }

  /** Unwrap a peer's sender key; throws E2eeError if it fails. @param {Announcement} peer @param {string} body */
  async unwrapSenderKey(peer, body) {
    let parsed;
    try { parsed = JSON.parse(body); } catch { throw new E2eeError('key message is not JSON'); }
    const { t, kid, key } = parsed ?? {};
    if (t !== 'sender-key' || !Number.isInteger(kid) || typeof key !== 'string') throw new E2eeError('key message is malformed');
    if (Math.floor(kid / 256) !== peer.senderId) throw new E2eeError('key message names another sender');
    let sealed;
    try { sealed = fromBase64(key); } catch { throw new E2eeError('key message is not base64'); }
    const senderKey = await open(await this._pairwiseKey(peer.xPublic), sealed,
      this._senderKeyAad(peer.xPublic, this.xPublic, kid));
    if (senderKey.length !== 32) throw new E2eeError('sender key has the wrong length');
    return { kid, senderKey };
  }
}

/** @param {Uint8Array} senderKey */
async function chatKey(senderKey) {
  return aesKey(await hkdf(senderKey, new Uint8Array(0), `${LABEL}chat`, 16));
}

/** Chat AAD: the KID and the sender's message number, so neither can be changed. @param {number} kid @param {number} seq */
const chatAad = (kid, seq) => encoder.encode(`${LABEL}chat|${kid}|${seq}`);

/**
 * Encrypt a chat message under my current sender key. `seq` numbers my messages
 * from 0 for as long as I am in the meeting, so that a receiver can refuse one
 * delivered twice. @param {number} kid @param {number} seq @param {Uint8Array} senderKey @param {string} text
 */
export async function sealChat(kid, seq, senderKey, text) {
  const sealed = await seal(await chatKey(senderKey), encoder.encode(text), chatAad(kid, seq));
  return JSON.stringify({ kid, n: seq, c: toBase64(sealed) });
}

/** @param {string} body @returns {{kid: number, seq: number, sealed: Uint8Array}} */
export function parseChat(body) {
  let parsed;
  try { parsed = JSON.parse(body); } catch { throw new E2eeError('chat message is not JSON'); }
  if (!Number.isInteger(parsed?.kid) || !Number.isSafeInteger(parsed?.n) || parsed.n < 0
    || typeof parsed?.c !== 'string') throw new E2eeError('chat message is malformed');
  try { return { kid: parsed.kid, seq: parsed.n, sealed: fromBase64(parsed.c) }; } catch { throw new E2eeError('chat message is not base64'); }
}

/** @param {number} kid @param {number} seq @param {Uint8Array} senderKey @param {Uint8Array} sealed */
export async function openChat(kid, seq, senderKey, sealed) {
  return decoder.decode(await open(await chatKey(senderKey), sealed, chatAad(kid, seq)));
}

/** How far behind a sender's newest message one may still arrive (the server may reorder a little). */
export const CHAT_WINDOW = 64;

/**
 * Each sender's chat message numbers seen so far: a message delivered twice, or
 * further behind the newest than CHAT_WINDOW, is refused.
 */
export class ChatWindow {
  constructor() {
    /** By sender id: the newest number and the numbers seen within the window. @type {Map<number, {newest: number, seen: Set<number>}>} */
    this._senders = new Map();
  }

  /** '' if message `seq` of `senderId` is new (and now seen), else why not. @param {number} senderId @param {number} seq */
  accept(senderId, seq) {
    const sender = this._senders.get(senderId) ?? { newest: -1, seen: new Set() };
    if (seq <= sender.newest - CHAT_WINDOW) return 'too old';
    if (sender.seen.has(seq)) return 'delivered twice';
    sender.seen.add(seq);
    if (seq > sender.newest) {
      sender.newest = seq;
      for (const old of sender.seen) if (old <= seq - CHAT_WINDOW) sender.seen.delete(old);
    }
    this._senders.set(senderId, sender);
    return '';
  }

  /** Forget a sender who left. @param {number} senderId */
  forget(senderId) { this._senders.delete(senderId); }
}
