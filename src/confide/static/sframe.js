// @ts-check
/**
 * SFrame (RFC 9605) frame encryption with WebCrypto, byte for byte the same as
 * src/confide/e2ee/sframe.py. No DOM: it runs in the RTCRtpScriptTransform worker on
 * every frame, and in Node 20 for tests. Keys are derived and imported once per KID;
 * a frame costs one header encode or parse, one nonce and one AEAD call.
 *
 * KID and CTR are unsigned 64-bit values: they are accepted as number or bigint and
 * always returned as bigint.
 */

export const AES_128_CTR_HMAC_SHA256_80 = 0x0001;
export const AES_128_CTR_HMAC_SHA256_64 = 0x0002;
export const AES_128_CTR_HMAC_SHA256_32 = 0x0003;
export const AES_128_GCM_SHA256_128 = 0x0004;
export const AES_256_GCM_SHA512_128 = 0x0005;

/** Largest KID or CTR: the header carries at most 8 bytes of each (section 4.3). */
export const MAX_VALUE = 0xffff_ffff_ffff_ffffn;

/** How many counters below the highest one seen a receiver still accepts, once each. */
export const REPLAY_WINDOW = 128;

export const SFRAME_KEY_LABEL = 'SFrame 1.0 Secret key ';
export const SFRAME_SALT_LABEL = 'SFrame 1.0 Secret salt ';

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * Section 4.5. nk is the AEAD key size; for the AES-CTR suites (nka set), the AES
 * key and the HMAC key together (section 4.5.1).
 * @typedef {{hash: string, nk: number, nn: number, nt: number, nka: number | null}} SuiteParams
 */

/** @type {Map<number, SuiteParams>} */
const SUITES = new Map([
  [AES_128_CTR_HMAC_SHA256_80, { hash: 'SHA-256', nk: 48, nn: 12, nt: 10, nka: 16 }],
  [AES_128_CTR_HMAC_SHA256_64, { hash: 'SHA-256', nk: 48, nn: 12, nt: 8, nka: 16 }],
  [AES_128_CTR_HMAC_SHA256_32, { hash: 'SHA-256', nk: 48, nn: 12, nt: 4, nka: 16 }],
  [AES_128_GCM_SHA256_128, { hash: 'SHA-256', nk: 16, nn: 12, nt: 16, nka: null }],
  [AES_256_GCM_SHA512_128, { hash: 'SHA-512', nk: 32, nn: 12, nt: 16, nka: null }],
]);

/**
 * Why a frame was refused. `reason` is one of 'malformed', 'unknown-kid', 'replayed',
 * 'too-old', 'auth-failed'; the caller drops the frame (or, for 'unknown-kid', may
 * hold it until the key arrives, RFC 9605 section 4.4.4).
 */
export class SFrameError extends Error {
  /** @param {string} reason @param {string} message */
  constructor(reason, message) {
    super(message);
    this.name = 'SFrameError';
    this.reason = reason;
  }
}

/** @param {number} suite */
function suiteParams(suite) {
  const params = SUITES.get(suite);
  if (!params) throw new RangeError(`unsupported SFrame cipher suite 0x${hex16(suite)}`);
  return params;
}

/** @param {number} value */
function hex16(value) {
  return value.toString(16).padStart(4, '0');
}

/**
 * @param {number | bigint} value @param {string} name
 * @returns {bigint}
 */
function toU64(value, name) {
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new RangeError(`${name} ${value} is not an exact integer; pass a bigint`);
  }
  const big = BigInt(value);
  if (big < 0n || big > MAX_VALUE) throw new RangeError(`${name} ${value} is outside 0..2^64-1`);
  return big;
}

/** @param {Uint8Array | ArrayBuffer} data */
function toBytes(data) {
  return data instanceof Uint8Array ? data : new Uint8Array(data);
}

/**
 * WebCrypto's view of our bytes: TypeScript 5.7+ no longer takes a plain Uint8Array
 * (which might sit on a SharedArrayBuffer) as a BufferSource; ours never do.
 * @param {Uint8Array} bytes
 * @returns {BufferSource}
 */
function source(bytes) {
  return /** @type {BufferSource} */ (bytes);
}

/** @param {Uint8Array} a @param {Uint8Array} b */
function concat(a, b) {
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// -- Header (RFC 9605 section 4.3) ----------------------------------------------

/** @param {bigint} value */
function compactLength(value) {
  let length = 0;
  for (let rest = value; rest > 0n; rest >>= 8n) length += 1;
  return length;
}

/** @param {Uint8Array} out @param {number} offset @param {bigint} value @param {number} length */
function writeBigEndian(out, offset, value, length) {
  let rest = value;
  for (let i = offset + length - 1; i >= offset; i -= 1) {
    out[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}

/**
 * The SFrame header for `kid` and `ctr`: values below 8 sit in the config byte,
 * larger ones follow it in the fewest big-endian bytes, KID first.
 * @param {number | bigint} kid @param {number | bigint} ctr
 * @returns {Uint8Array}
 */
export function encodeHeader(kid, ctr) {
  const kidValue = toU64(kid, 'KID');
  const ctrValue = toU64(ctr, 'CTR');
  const kidLength = kidValue < 8n ? 0 : compactLength(kidValue);
  const ctrLength = ctrValue < 8n ? 0 : compactLength(ctrValue);
  const out = new Uint8Array(1 + kidLength + ctrLength);
  let config = 0;
  if (kidLength === 0) {
    config |= Number(kidValue) << 4;
  } else {
    config |= 0x80 | ((kidLength - 1) << 4);
    writeBigEndian(out, 1, kidValue, kidLength);
  }
  if (ctrLength === 0) {
    config |= Number(ctrValue);
  } else {
    config |= 0x08 | (ctrLength - 1);
    writeBigEndian(out, 1 + kidLength, ctrValue, ctrLength);
  }
  out[0] = config;
  return out;
}

/**
 * @param {Uint8Array} bytes @param {number} offset @param {boolean} extended
 * @param {number} bits @param {string} name
 * @returns {[bigint, number]} the value and the offset after it
 */
function readField(bytes, offset, extended, bits, name) {
  if (!extended) return [BigInt(bits), offset];
  const length = bits + 1;
  if (bytes.length < offset + length) {
    throw new SFrameError('malformed', `SFrame header truncated: ${name} needs ${length} bytes`);
  }
  let value = 0n;
  for (let i = offset; i < offset + length; i += 1) value = (value << 8n) | BigInt(bytes[i]);
  // Section 4.3: "the value MUST be encoded with the minimum number of bytes".
  if (value < 8n || bytes[offset] === 0) {
    throw new SFrameError('malformed', `SFrame header has a non-minimal ${name} encoding`);
  }
  return [value, offset + length];
}

/**
 * Parse the header at the start of `data`. Throws SFrameError ('malformed') if the
 * data is shorter than the header it announces, or if KID or CTR is not in its
 * shortest form (the RFC requires it, and it keeps one header per (KID, CTR)).
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {{kid: bigint, ctr: bigint, length: number}} length: header size in bytes
 */
export function decodeHeader(data) {
  const bytes = toBytes(data);
  if (bytes.length === 0)
    throw new SFrameError('malformed', 'SFrame header truncated: no config byte');
  const config = bytes[0];
  const [kid, afterKid] = readField(bytes, 1, (config & 0x80) !== 0, (config >> 4) & 0x07, 'KID');
  const [ctr, length] = readField(bytes, afterKid, (config & 0x08) !== 0, config & 0x07, 'CTR');
  return { kid, ctr, length };
}

// -- AEAD (RFC 9605 section 4.5) ------------------------------------------------

/**
 * AEAD.Encrypt / AEAD.Decrypt of one suite under one key; the tag is the tail of the
 * ciphertext. decrypt rejects with SFrameError ('auth-failed') if the tag is wrong.
 * `key` is the AES key (for the AES-CTR suites, the encryption subkey).
 * @typedef {object} SFrameAead
 * @property {CryptoKey} key
 * @property {(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array) => Promise<Uint8Array>} encrypt
 * @property {(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array) => Promise<Uint8Array>} decrypt
 */

/** @param {Uint8Array} rawKey */
async function importAesGcm(rawKey) {
  const subtle = globalThis.crypto.subtle;
  const key = await subtle.importKey('raw', source(rawKey), 'AES-GCM', false, [
    'encrypt',
    'decrypt',
  ]);
  return /** @type {SFrameAead} */ ({
    key,
    async encrypt(nonce, aad, plaintext) {
      const params = { name: 'AES-GCM', iv: nonce, additionalData: aad };
      return new Uint8Array(await subtle.encrypt(params, key, source(plaintext)));
    },
    async decrypt(nonce, aad, ciphertext) {
      const params = { name: 'AES-GCM', iv: nonce, additionalData: aad };
      try {
        return new Uint8Array(await subtle.decrypt(params, key, source(ciphertext)));
      } catch {
        throw new SFrameError('auth-failed', 'SFrame authentication failed');
      }
    },
  });
}

/**
 * Section 4.5.1: AES-CTR then a truncated HMAC over lengths, nonce, AAD and ciphertext.
 * @param {Uint8Array} rawKey @param {SuiteParams} params @param {number} nka
 */
async function importAesCtrHmac(rawKey, params, nka) {
  const subtle = globalThis.crypto.subtle;
  const { nt } = params;
  const [encKey, authKey] = await Promise.all([
    subtle.importKey('raw', source(rawKey.subarray(0, nka)), 'AES-CTR', false, ['encrypt']),
    subtle.importKey(
      'raw',
      source(rawKey.subarray(nka)),
      { name: 'HMAC', hash: params.hash },
      false,
      ['sign'],
    ),
  ]);
  /** @param {Uint8Array} nonce @param {Uint8Array} data */
  const aesCtr = async (nonce, data) => {
    // The initial counter block is the nonce followed by four zero bytes.
    const counter = new Uint8Array(16);
    counter.set(nonce);
    return new Uint8Array(
      await subtle.encrypt({ name: 'AES-CTR', counter, length: 32 }, encKey, source(data)),
    );
  };
  /** @param {Uint8Array} nonce @param {Uint8Array} aad @param {Uint8Array} ct */
  const tag = async (nonce, aad, ct) => {
    const authData = new Uint8Array(24 + nonce.length + aad.length + ct.length);
    const view = new DataView(authData.buffer);
    view.setBigUint64(0, BigInt(aad.length));
    view.setBigUint64(8, BigInt(ct.length));
    view.setBigUint64(16, BigInt(nt));
    authData.set(nonce, 24);
    authData.set(aad, 24 + nonce.length);
    authData.set(ct, 24 + nonce.length + aad.length);
    return new Uint8Array(await subtle.sign('HMAC', authKey, authData), 0, nt);
  };
  return /** @type {SFrameAead} */ ({
    key: encKey,
    async encrypt(nonce, aad, plaintext) {
      const ct = await aesCtr(nonce, plaintext);
      const out = new Uint8Array(ct.length + nt);
      out.set(ct);
      out.set(await tag(nonce, aad, ct), ct.length);
      return out;
    },
    async decrypt(nonce, aad, ciphertext) {
      if (ciphertext.length < nt) {
        throw new SFrameError('auth-failed', 'SFrame ciphertext shorter than its tag');
      }
      const ct = ciphertext.subarray(0, ciphertext.length - nt);
      const expected = await tag(nonce, aad, ct);
      let difference = 0;
      for (let i = 0; i < nt; i += 1) difference |= expected[i] ^ ciphertext[ct.length + i];
      if (difference !== 0) throw new SFrameError('auth-failed', 'SFrame authentication failed');
      return aesCtr(nonce, ct);
    },
  });
}

/**
 * The AEAD of `suite` keyed with `rawKey` (sframe_key, AEAD.Nk bytes).
 * @param {number} suite @param {Uint8Array} rawKey
 * @returns {Promise<SFrameAead>}
 */
export async function importAead(suite, rawKey) {
  const params = suiteParams(suite);
  if (rawKey.length !== params.nk) {
    throw new RangeError(
      `suite 0x${hex16(suite)} needs a ${params.nk}-byte key, not ${rawKey.length}`,
    );
  }
  return params.nka === null ? importAesGcm(rawKey) : importAesCtrHmac(rawKey, params, params.nka);
}

// -- Keys (RFC 9605 section 4.4.2) ----------------------------------------------

/**
 * @typedef {object} SFrameKeys
 * @property {CryptoKey} key sframe_key, imported (non-extractable) for the suite's AES
 * @property {Uint8Array} rawKey sframe_key as bytes (for tests)
 * @property {Uint8Array} salt sframe_salt
 * @property {SFrameAead} aead
 */

/**
 * sframe_key and sframe_salt for `baseKey` under `kid` and `suite`.
 * sframe_secret = HKDF-Extract("", base_key); each label is the ASCII prefix, KID as
 * 8 bytes big-endian (not the header's compact form) and the suite as 2 bytes.
 * @param {Uint8Array} baseKey @param {number | bigint} kid
 * @param {number} [suite]
 * @returns {Promise<SFrameKeys>}
 */
export async function deriveKeySalt(baseKey, kid, suite = AES_128_GCM_SHA256_128) {
  const params = suiteParams(suite);
  const suffix = new Uint8Array(10);
  const view = new DataView(suffix.buffer);
  view.setBigUint64(0, toU64(kid, 'KID'));
  view.setUint16(8, suite);
  const subtle = globalThis.crypto.subtle;
  const material = await subtle.importKey('raw', source(baseKey), 'HKDF', false, ['deriveBits']);
  /** @param {string} label @param {number} size */
  const expand = async (label, size) => {
    const info = concat(encoder.encode(label), suffix);
    const hkdf = { name: 'HKDF', hash: params.hash, salt: EMPTY, info };
    return new Uint8Array(await subtle.deriveBits(hkdf, material, size * 8));
  };
  const [rawKey, salt] = await Promise.all([
    expand(SFRAME_KEY_LABEL, params.nk),
    expand(SFRAME_SALT_LABEL, params.nn),
  ]);
  const aead = await importAead(suite, rawKey);
  return { key: aead.key, rawKey, salt, aead };
}

/**
 * Section 4.4.3: CTR encoded big-endian in Nn bytes, XORed with sframe_salt. Every
 * suite has Nn = 12, so CTR only touches the last 8 bytes.
 * @param {Uint8Array} salt @param {bigint} ctr
 */
function makeNonce(salt, ctr) {
  const nonce = salt.slice();
  const view = new DataView(nonce.buffer);
  view.setBigUint64(nonce.length - 8, view.getBigUint64(nonce.length - 8) ^ ctr);
  return nonce;
}

// -- Sender and receiver (RFC 9605 sections 4.4.3 and 4.4.4) --------------------

/**
 * Encrypts frames under one sender key. Each call takes the next CTR, reserved before
 * any await, so no (KID, CTR) pair is used twice even with calls in flight together.
 */
export class SFrameSender {
  /** @type {bigint} */
  #kid;
  /** @type {bigint | null} */
  #nextCtr;
  /** @type {Promise<SFrameKeys>} */
  #derived;
  /** @type {SFrameKeys | null} */
  #keys = null;

  /**
   * @param {Uint8Array} baseKey @param {number | bigint} kid
   * @param {number} [suite]
   * @param {{ctr?: number | bigint}} [options] ctr: the first counter; only tests start
   *   anywhere but 0
   */
  constructor(baseKey, kid, suite = AES_128_GCM_SHA256_128, options = {}) {
    suiteParams(suite);
    this.#kid = toU64(kid, 'KID');
    this.#nextCtr = toU64(options.ctr ?? 0n, 'CTR');
    this.#derived = deriveKeySalt(baseKey, this.#kid, suite);
    // Marks the rejection handled here; encrypt still sees it.
    this.#derived.catch(() => {});
  }

  get kid() {
    return this.#kid;
  }

  /** The CTR the next frame will carry; null once every counter is used. */
  get nextCtr() {
    return this.#nextCtr;
  }

  /**
   * header || AEAD.Encrypt(sframe_key, nonce, header || metadata, plaintext). The
   * result owns its whole buffer, so `.buffer` can become an encoded frame's data.
   * `metadata` is authenticated but not sent: the receiver must supply the same.
   * @param {Uint8Array | ArrayBuffer} plaintext
   * @param {Uint8Array} [metadata]
   * @returns {Promise<Uint8Array>}
   */
  async encrypt(plaintext, metadata = EMPTY) {
    const ctr = this.#nextCtr;
    if (ctr === null) throw new Error(`SFrame KID ${this.#kid} has used every CTR`);
    this.#nextCtr = ctr < MAX_VALUE ? ctr + 1n : null;
    const keys = this.#keys ?? (this.#keys = await this.#derived);
    const header = encodeHeader(this.#kid, ctr);
    const aad = concat(header, metadata);
    const ct = await keys.aead.encrypt(makeNonce(keys.salt, ctr), aad, toBytes(plaintext));
    const frame = new Uint8Array(header.length + ct.length);
    frame.set(header);
    frame.set(ct, header.length);
    return frame;
  }
}

const WINDOW_SIZE = BigInt(REPLAY_WINDOW);
const WINDOW_MASK = (1n << WINDOW_SIZE) - 1n;

/**
 * Counter-based anti-replay for one KID, after RFC 3711 section 3.3.2 (which RFC 9605
 * section 9.3 suggests adapting). It remembers the highest CTR accepted and which of
 * the REPLAY_WINDOW counters at or below it were seen. A CTR above the highest is
 * new; one within the window is accepted once; one REPLAY_WINDOW or more below the
 * highest is too old to tell, so it is refused. Frames may therefore arrive out of
 * order by up to 127 counters.
 */
export class ReplayWindow {
  /** @type {bigint | null} */
  #highest = null;
  /** Bit i set: CTR highest - i was accepted. */
  #seen = 0n;

  /**
   * Throw SFrameError ('replayed' or 'too-old') if `ctr` may not be accepted;
   * changes nothing.
   * @param {bigint} ctr
   */
  check(ctr) {
    if (this.#highest === null || ctr > this.#highest) return;
    const behind = this.#highest - ctr;
    if (behind >= WINDOW_SIZE) {
      throw new SFrameError('too-old', `SFrame CTR ${ctr} is older than the replay window`);
    }
    if ((this.#seen >> behind) & 1n) {
      throw new SFrameError('replayed', `SFrame CTR ${ctr} was already received`);
    }
  }

  /**
   * Record `ctr`; call only after `check` passed and the frame authenticated.
   * @param {bigint} ctr
   */
  accept(ctr) {
    if (this.#highest === null || ctr > this.#highest) {
      const shift = this.#highest === null ? WINDOW_SIZE : ctr - this.#highest;
      this.#seen = shift >= WINDOW_SIZE ? 1n : ((this.#seen << shift) | 1n) & WINDOW_MASK;
      this.#highest = ctr;
    } else {
      this.#seen |= 1n << (this.#highest - ctr);
    }
  }
}

/**
 * @typedef {object} ReceiverKey
 * @property {Uint8Array} baseKey
 * @property {Promise<SFrameKeys>} derived
 * @property {SFrameKeys | null} keys
 * @property {ReplayWindow} window
 */

/**
 * Decrypts frames from any sender whose key it holds, chosen by the header's KID.
 * Every KID has its own ReplayWindow, moved only by frames that authenticate, so
 * forged frames cannot push it forward.
 */
export class SFrameReceiver {
  /** @type {number} */
  #suite;
  /** @type {Map<bigint, ReceiverKey>} */
  #keys = new Map();

  /** @param {number} [suite] */
  constructor(suite = AES_128_GCM_SHA256_128) {
    suiteParams(suite);
    this.#suite = suite;
  }

  /**
   * Accept frames under `kid`; usable at once (decrypt waits for the derivation), the
   * promise only reports when the key is ready. Adding the key `kid` already has
   * changes nothing, so a duplicated key delivery cannot reopen the replay window; a
   * different key replaces it and starts a new window, as its sender starts counting
   * again.
   * @param {number | bigint} kid @param {Uint8Array} baseKey
   * @returns {Promise<void>}
   */
  async addKey(kid, baseKey) {
    const kidValue = toU64(kid, 'KID');
    const current = this.#keys.get(kidValue);
    if (current && equalBytes(current.baseKey, baseKey)) {
      await current.derived;
      return;
    }
    const copy = Uint8Array.from(baseKey);
    /** @type {ReceiverKey} */
    const entry = {
      baseKey: copy,
      derived: deriveKeySalt(copy, kidValue, this.#suite),
      keys: null,
      window: new ReplayWindow(),
    };
    this.#keys.set(kidValue, entry);
    entry.derived.catch(() => {
      if (this.#keys.get(kidValue) === entry) this.#keys.delete(kidValue);
    });
    await entry.derived;
  }

  /**
   * Stop accepting frames under `kid`, including those being decrypted now; does
   * nothing if it has no key.
   * @param {number | bigint} kid
   */
  removeKey(kid) {
    this.#keys.delete(toU64(kid, 'KID'));
  }

  /**
   * The plaintext of one SFrame ciphertext. Rejects with SFrameError, leaving the
   * replay window as it was, if the header is malformed or truncated, the KID has no
   * key, the CTR was seen or is too old, or the tag does not verify.
   * @param {Uint8Array | ArrayBuffer} frame
   * @param {Uint8Array} [metadata]
   * @returns {Promise<Uint8Array>}
   */
  async decrypt(frame, metadata = EMPTY) {
    const bytes = toBytes(frame);
    const { kid, ctr, length } = decodeHeader(bytes);
    const entry = this.#keys.get(kid);
    if (!entry) throw new SFrameError('unknown-kid', `SFrame KID ${kid} has no key`);
    entry.window.check(ctr);
    const keys = entry.keys ?? (entry.keys = await entry.derived);
    const aad = concat(bytes.subarray(0, length), metadata);
    const nonce = makeNonce(keys.salt, ctr);
    const plaintext = await keys.aead.decrypt(nonce, aad, bytes.subarray(length));
    if (this.#keys.get(kid) !== entry) {
      throw new SFrameError('unknown-kid', `SFrame KID ${kid} was removed`);
    }
    // Again: a copy of this frame may have been accepted while this one decrypted.
    entry.window.check(ctr);
    entry.window.accept(ctr);
    return plaintext;
  }
}

/** @param {Uint8Array} a @param {Uint8Array} b */
function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i += 1) difference |= a[i] ^ b[i];
  return difference === 0;
}
