// src/confide/static/sframe.js against the RFC 9605 Appendix C test vectors in
// tests/vectors/sframe_rfc9605.json, and the frames a receiver must refuse.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';

import {
  AES_128_GCM_SHA256_128,
  REPLAY_WINDOW,
  SFRAME_KEY_LABEL,
  SFRAME_SALT_LABEL,
  SFrameError,
  SFrameReceiver,
  SFrameSender,
  decodeHeader,
  deriveKeySalt,
  encodeHeader,
  importAead,
} from '../../src/confide/static/sframe.js';
import { webcrypto } from 'node:crypto';

// Debian's Node 18 has no global WebCrypto by default; Node 20 does.
globalThis.crypto ??= /** @type {any} */ (webcrypto);

const vectors = JSON.parse(
  await readFile(new URL('../vectors/sframe_rfc9605.json', import.meta.url), 'utf8'),
);

/** @param {string} text */
const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
/** @param {Uint8Array} bytes */
const toHex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
const encoder = new TextEncoder();

const BASE_KEY = fromHex('000102030405060708090a0b0c0d0e0f');
const OTHER_KEY = fromHex('101112131415161718191a1b1c1d1e1f');
const METADATA = encoder.encode('VP8 payload header');
const PLAINTEXT = encoder.encode('a video frame');

/**
 * @param {string} reason
 * @returns {(error: unknown) => boolean}
 */
const refusedFor = (reason) => (error) => {
  assert.ok(error instanceof SFrameError, String(error));
  assert.equal(error.reason, reason, error.message);
  return true;
};

describe('RFC 9605 Appendix C.1: header encoding and decoding', () => {
  test(`encodes all ${vectors.header.vectors.length} KID/CTR pairs to the RFC bytes`, () => {
    for (const { kid, ctr, header } of vectors.header.vectors) {
      assert.equal(toHex(encodeHeader(BigInt(kid), BigInt(ctr))), header, `kid ${kid} ctr ${ctr}`);
    }
  });

  test('decodes every RFC header back to its KID, CTR and length', () => {
    for (const { kid, ctr, header } of vectors.header.vectors) {
      const decoded = decodeHeader(fromHex(header));
      assert.deepEqual(decoded, { kid: BigInt(kid), ctr: BigInt(ctr), length: header.length / 2 });
    }
  });
});

describe('RFC 9605 Appendix C.2: AES-CTR with HMAC (section 4.5.1)', () => {
  for (const v of vectors.aes_ctr_hmac.vectors) {
    test(`suite ${v.cipher_suite} encrypts and decrypts`, async () => {
      const aead = await importAead(Number(v.cipher_suite), fromHex(v.key));
      const [nonce, aad] = [fromHex(v.nonce), fromHex(v.aad)];
      assert.equal(toHex(await aead.encrypt(nonce, aad, fromHex(v.pt))), v.ct);
      assert.equal(toHex(await aead.decrypt(nonce, aad, fromHex(v.ct))), v.pt);
    });
  }
});

describe('RFC 9605 Appendix C.3: SFrame encryption and decryption', () => {
  for (const v of vectors.sframe.vectors) {
    const suite = Number(v.cipher_suite);
    const kid = BigInt(v.kid);
    const ctr = BigInt(v.ctr);

    test(`suite ${v.cipher_suite}: the labels are the RFC's (section 4.4.2)`, () => {
      const suffix = v.kid.slice(2) + v.cipher_suite.slice(2);
      assert.equal(toHex(encoder.encode(SFRAME_KEY_LABEL)) + suffix, v.sframe_key_label);
      assert.equal(toHex(encoder.encode(SFRAME_SALT_LABEL)) + suffix, v.sframe_salt_label);
    });

    test(`suite ${v.cipher_suite}: derives sframe_key and sframe_salt (section 4.4.2)`, async () => {
      const { rawKey, salt } = await deriveKeySalt(fromHex(v.base_key), kid, suite);
      assert.equal(toHex(rawKey), v.sframe_key);
      assert.equal(toHex(salt), v.sframe_salt);
    });

    test(`suite ${v.cipher_suite}: encrypt gives the RFC ciphertext (section 4.4.3)`, async () => {
      const sender = new SFrameSender(fromHex(v.base_key), kid, suite, { ctr });
      assert.equal(toHex(await sender.encrypt(fromHex(v.pt), fromHex(v.metadata))), v.ct);
    });

    test(`suite ${v.cipher_suite}: decrypt recovers the plaintext (section 4.4.4)`, async () => {
      const receiver = new SFrameReceiver(suite);
      await receiver.addKey(kid, fromHex(v.base_key));
      assert.equal(toHex(await receiver.decrypt(fromHex(v.ct), fromHex(v.metadata))), v.pt);
    });
  }
});

describe('header edge cases (section 4.3)', () => {
  test('refuses an empty header', () => {
    assert.throws(() => decodeHeader(new Uint8Array(0)), refusedFor('malformed'));
  });

  test('refuses a header shorter than its KID and CTR lengths', () => {
    const header = encodeHeader(0x123n, 0x4567n);
    for (let length = 1; length < header.length; length += 1) {
      assert.throws(() => decodeHeader(header.subarray(0, length)), refusedFor('malformed'));
    }
  });

  test('refuses a KID or CTR not in its shortest form', () => {
    for (const header of ['8805', '0805', '890012', '09000f']) {
      assert.throws(() => decodeHeader(fromHex(header)), refusedFor('malformed'), header);
    }
  });

  test('refuses values outside 0..2^64-1 and unsafe numbers', () => {
    assert.throws(() => encodeHeader(1n << 64n, 0), RangeError);
    assert.throws(() => encodeHeader(0, -1), RangeError);
    assert.throws(() => encodeHeader(2 ** 53, 0), RangeError);
  });
});

describe('SFrameSender and SFrameReceiver', () => {
  async function pair(kid = 7n) {
    const sender = new SFrameSender(BASE_KEY, kid);
    const receiver = new SFrameReceiver();
    await receiver.addKey(kid, BASE_KEY);
    return { sender, receiver };
  }

  test('round-trips frames with metadata, each under the next CTR', async () => {
    const { sender, receiver } = await pair(0x1234n);
    for (let ctr = 0n; ctr < 10n; ctr += 1n) {
      const frame = await sender.encrypt(PLAINTEXT, METADATA);
      assert.deepEqual(decodeHeader(frame), { kid: 0x1234n, ctr, length: ctr < 8n ? 3 : 4 });
      assert.deepEqual(await receiver.decrypt(frame, METADATA), PLAINTEXT);
    }
    assert.equal(sender.nextCtr, 10n);
  });

  test('gives concurrent encrypt calls distinct counters', async () => {
    const { sender } = await pair();
    const frames = await Promise.all([1, 2, 3, 4].map(() => sender.encrypt(PLAINTEXT)));
    assert.deepEqual(
      frames.map((frame) => decodeHeader(frame).ctr),
      [0n, 1n, 2n, 3n],
    );
  });

  test('works with the default suite AES_128_GCM_SHA256_128', async () => {
    const { sender } = await pair();
    const frame = await sender.encrypt(PLAINTEXT);
    // One header byte for KID 7 and CTR 0, then the plaintext and a 16-byte tag.
    assert.equal(frame.length, 1 + PLAINTEXT.length + 16);
    assert.equal(AES_128_GCM_SHA256_128, 0x0004);
  });

  test('refuses a frame whose KID has no key', async () => {
    const { sender } = await pair(7n);
    const receiver = new SFrameReceiver();
    await receiver.addKey(8n, BASE_KEY);
    await assert.rejects(
      receiver.decrypt(await sender.encrypt(PLAINTEXT)),
      refusedFor('unknown-kid'),
    );
  });

  test('refuses frames after removeKey', async () => {
    const { sender, receiver } = await pair();
    receiver.removeKey(7n);
    await assert.rejects(
      receiver.decrypt(await sender.encrypt(PLAINTEXT)),
      refusedFor('unknown-kid'),
    );
  });

  test('refuses a frame with one tag bit flipped', async () => {
    const { sender, receiver } = await pair();
    const frame = await sender.encrypt(PLAINTEXT, METADATA);
    frame[frame.length - 1] ^= 0x01;
    await assert.rejects(receiver.decrypt(frame, METADATA), refusedFor('auth-failed'));
  });

  test('refuses a frame with one ciphertext bit flipped', async () => {
    const { sender, receiver } = await pair();
    const frame = await sender.encrypt(PLAINTEXT, METADATA);
    frame[2] ^= 0x80;
    await assert.rejects(receiver.decrypt(frame, METADATA), refusedFor('auth-failed'));
  });

  test('refuses a frame whose header (part of the AAD) was changed', async () => {
    const { sender, receiver } = await pair(0x1234n);
    await sender.encrypt(PLAINTEXT);
    const frame = await sender.encrypt(PLAINTEXT); // header 0x91 0x12 0x34
    frame[0] ^= 0x01; // CTR 1 becomes CTR 0: still a valid header, with a key
    await assert.rejects(receiver.decrypt(frame), refusedFor('auth-failed'));
  });

  test('refuses a frame decrypted with other metadata', async () => {
    const { sender, receiver } = await pair();
    const frame = await sender.encrypt(PLAINTEXT, METADATA);
    await assert.rejects(
      receiver.decrypt(frame, encoder.encode('other')),
      refusedFor('auth-failed'),
    );
  });

  test('refuses a frame under the same KID but another key', async () => {
    const { receiver } = await pair();
    const impostor = new SFrameSender(OTHER_KEY, 7n);
    await assert.rejects(
      receiver.decrypt(await impostor.encrypt(PLAINTEXT)),
      refusedFor('auth-failed'),
    );
  });

  test('refuses a truncated header', async () => {
    const { receiver } = await pair();
    await assert.rejects(receiver.decrypt(fromHex('9912')), refusedFor('malformed'));
    await assert.rejects(receiver.decrypt(new Uint8Array(0)), refusedFor('malformed'));
  });

  test('refuses a frame shorter than the tag', async () => {
    const { sender, receiver } = await pair();
    const frame = await sender.encrypt(PLAINTEXT);
    await assert.rejects(receiver.decrypt(frame.subarray(0, 10)), refusedFor('auth-failed'));
  });
});

describe(`replay window (${REPLAY_WINDOW} counters per KID)`, () => {
  async function framesFrom(count, kid = 3n) {
    const sender = new SFrameSender(BASE_KEY, kid);
    const frames = [];
    for (let i = 0; i < count; i += 1) frames.push(await sender.encrypt(PLAINTEXT));
    const receiver = new SFrameReceiver();
    await receiver.addKey(kid, BASE_KEY);
    return { frames, receiver };
  }

  test('refuses a frame whose CTR was already received', async () => {
    const { frames, receiver } = await framesFrom(1);
    await receiver.decrypt(frames[0]);
    await assert.rejects(receiver.decrypt(frames[0]), refusedFor('replayed'));
  });

  test('refuses a replay sent while the original is still decrypting', async () => {
    const { frames, receiver } = await framesFrom(1);
    const results = await Promise.allSettled([
      receiver.decrypt(frames[0]),
      receiver.decrypt(frames[0]),
    ]);
    assert.deepEqual(
      results.map((result) => result.status),
      ['fulfilled', 'rejected'],
    );
  });

  test('accepts frames out of order within the window, each once', async () => {
    const { frames, receiver } = await framesFrom(REPLAY_WINDOW);
    await receiver.decrypt(frames[REPLAY_WINDOW - 1]);
    await receiver.decrypt(frames[0]); // 127 behind: the oldest the window holds
    await receiver.decrypt(frames[60]);
    await assert.rejects(receiver.decrypt(frames[0]), refusedFor('replayed'));
    await assert.rejects(receiver.decrypt(frames[60]), refusedFor('replayed'));
  });

  test('refuses a CTR 128 or more below the highest received', async () => {
    const { frames, receiver } = await framesFrom(REPLAY_WINDOW + 1);
    await receiver.decrypt(frames[REPLAY_WINDOW]);
    await assert.rejects(receiver.decrypt(frames[0]), refusedFor('too-old'));
  });

  test('keeps one window per KID', async () => {
    const { frames, receiver } = await framesFrom(1, 3n);
    const other = new SFrameSender(OTHER_KEY, 4n);
    await receiver.addKey(4n, OTHER_KEY);
    await receiver.decrypt(frames[0]);
    await receiver.decrypt(await other.encrypt(PLAINTEXT)); // CTR 0 again, other KID
  });

  test('does not move for a forged frame', async () => {
    const { frames, receiver } = await framesFrom(1);
    const forged = await new SFrameSender(OTHER_KEY, 3n, undefined, { ctr: 1000n }).encrypt(
      PLAINTEXT,
    );
    await assert.rejects(receiver.decrypt(forged), refusedFor('auth-failed'));
    await receiver.decrypt(frames[0]); // CTR 0 is still inside the window
  });

  test('survives the same key being added again', async () => {
    const { frames, receiver } = await framesFrom(1);
    await receiver.decrypt(frames[0]);
    await receiver.addKey(3n, BASE_KEY);
    await assert.rejects(receiver.decrypt(frames[0]), refusedFor('replayed'));
  });

  test('starts afresh when the KID gets a different key', async () => {
    const { frames, receiver } = await framesFrom(1);
    await receiver.decrypt(frames[0]);
    await receiver.addKey(3n, OTHER_KEY);
    const renewed = new SFrameSender(OTHER_KEY, 3n);
    await receiver.decrypt(await renewed.encrypt(PLAINTEXT)); // CTR 0 under the new key
  });
});
