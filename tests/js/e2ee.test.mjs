// src/confide/static/e2ee.js on its own: announcements and what they must refuse,
// pairwise sender keys, chat, the join ratchet, KIDs, security code and fingerprint.
// tests/test_keys.py checks the same bytes against the Python implementation.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CHAT_WINDOW,
  ChatWindow,
  E2eeError,
  LABEL,
  MeetingKeys,
  concat,
  fingerprint,
  fromBase64,
  hkdf,
  kidOf,
  openChat,
  parseChat,
  ratchet,
  sealChat,
  securityCode,
  toBase64,
} from '../../src/confide/static/e2ee.js';
import { webcrypto } from 'node:crypto';

// Debian's Node 18 has no global WebCrypto by default; Node 20 does.
globalThis.crypto ??= /** @type {any} */ (webcrypto);

const encoder = new TextEncoder();
const LINK_SECRET = Uint8Array.from({ length: 32 }, (_, i) => i);
const OTHER_LINK_SECRET = new Uint8Array(32);
const MEETING_ID = 'mfrggzdfmztwq2lknnwg23tpoa';
const SENDER_KEY = Uint8Array.from({ length: 32 }, (_, i) => 32 + i);

/** A participant with a fresh identity. @param {Uint8Array} linkSecret */
async function participant(linkSecret = LINK_SECRET) {
  const keys = await MeetingKeys.fromLink(linkSecret, MEETING_ID);
  await keys.newIdentity();
  return keys;
}

/** Someone's announcement as another participant reads it. @param {MeetingKeys} of @param {MeetingKeys} by */
async function announced(of, by, name = 'Ada') {
  return by.openAnnouncement(await of.announce(name));
}

/** A base64 field with one bit flipped. @param {string} text */
function flip(text, index = 0) {
  const bytes = fromBase64(text);
  bytes[index] ^= 0x01;
  return toBase64(bytes);
}

/** @param {string} json @param {object} changes */
const changed = (json, changes) => JSON.stringify({ ...JSON.parse(json), ...changes });

/** @param {RegExp} message @returns {(error: unknown) => boolean} */
const e2eeError = (message) => (error) => {
  assert.ok(error instanceof E2eeError, String(error));
  assert.match(error.message, message);
  return true;
};

/**
 * The roster MAC key, derived here as docs/design.md, 'The key schedule', says, to
 * forge as a link holder.
 */
async function rosterMacKey() {
  const roster = await hkdf(LINK_SECRET, encoder.encode(MEETING_ID), `${LABEL}roster-key`);
  const raw = await hkdf(roster, new Uint8Array(0), `${LABEL}roster-mac`);
  return crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

describe('announcements', () => {
  test('round trip: the name, sender id and keys come back', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const peer = await announced(alice, bob, 'Zoë 🚀');
    assert.equal(peer.name, 'Zoë 🚀');
    assert.equal(peer.senderId, alice.senderId);
    assert.deepEqual(peer.xPublic, alice.xPublic);
    assert.deepEqual(peer.sPublic, alice.sPublic);
    assert.deepEqual(peer.identity, alice.identity);
    assert.equal(peer.identity.length, 32);
  });

  test('the profile carries no clear name, and fields in a fixed order', async () => {
    const profile = await (await participant()).announce('Ada Lovelace');
    assert.deepEqual(Object.keys(JSON.parse(profile)), ['v', 'id', 'x', 's', 'n', 'c', 'mac', 'sig']);
    assert.ok(!profile.includes('Ada'));
  });

  test('sender ids are 24 bits and not zero', async () => {
    const alice = await participant();
    assert.ok(Number.isInteger(alice.senderId) && alice.senderId >= 1 && alice.senderId < 2 ** 24);
  });

  test('refuses a changed MAC', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const tampered = changed(profile, { mac: flip(JSON.parse(profile).mac) });
    await assert.rejects(bob.openAnnouncement(tampered), e2eeError(/MAC does not match/));
  });

  test('refuses a changed signature', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const tampered = changed(profile, { sig: flip(JSON.parse(profile).sig) });
    await assert.rejects(bob.openAnnouncement(tampered), e2eeError(/signature does not match/));
  });

  test('refuses a changed name', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const tampered = changed(profile, { n: flip(JSON.parse(profile).n, 20) });
    await assert.rejects(bob.openAnnouncement(tampered), e2eeError(/MAC does not match/));
  });

  test('refuses a changed sender id', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const tampered = changed(profile, { id: (alice.senderId % (2 ** 24 - 1)) + 1 });
    await assert.rejects(bob.openAnnouncement(tampered), e2eeError(/MAC does not match/));
  });

  test('refuses an announcement made with another link secret', async () => {
    const [mallory, bob] = [await participant(OTHER_LINK_SECRET), await participant()];
    await assert.rejects(announced(mallory, bob), e2eeError(/MAC does not match the meeting link/));
  });

  test('refuses a good MAC over a key the signature does not match', async () => {
    // A link holder can MAC anything, but cannot sign for someone else's key.
    const [alice, bob, carol] = [await participant(), await participant(), await participant()];
    const fields = { ...JSON.parse(await alice.announce('Ada')), s: toBase64(carol.sPublic) };
    const transcript = encoder.encode(
      `${LABEL}announce|${MEETING_ID}|${fields.id}|${fields.x}|${fields.s}|${fields.n}|${fields.c}`);
    fields.mac = toBase64(new Uint8Array(await crypto.subtle.sign('HMAC', await rosterMacKey(), transcript)));
    await assert.rejects(bob.openAnnouncement(JSON.stringify(fields)),
      e2eeError(/signature does not match its key/));
  });

  test('an announcement commits to its code reveal, which stays secret in it', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const peer = await bob.openAnnouncement(profile);
    assert.deepEqual(peer.commitment, await bob.codeCommitment(alice.sPublic, alice.reveal));
    const other = crypto.getRandomValues(new Uint8Array(16));
    assert.notDeepEqual(peer.commitment, await bob.codeCommitment(alice.sPublic, other));
    assert.ok(!profile.includes(toBase64(alice.reveal)));
    await assert.rejects(bob.openAnnouncement(changed(profile, { c: toBase64(new Uint8Array(32)) })),
      e2eeError(/MAC does not match/));
  });

  test('refuses malformed announcements', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const profile = await alice.announce('Ada');
    const cases = [
      ['{', /not JSON/],
      ['null', /malformed/],
      [changed(profile, { v: 2 }), /malformed/],
      [changed(profile, { id: 0 }), /malformed/],
      [changed(profile, { id: 2 ** 24 }), /malformed/],
      [changed(profile, { id: 1.5 }), /malformed/],
      [changed(profile, { sig: 5 }), /malformed/],
      [changed(profile, { x: '@@@@' }), /not base64/],
      [changed(profile, { x: toBase64(new Uint8Array(31)) }), /keys are malformed/],
    ];
    for (const [text, message] of cases) {
      await assert.rejects(bob.openAnnouncement(/** @type {string} */ (text)),
        e2eeError(/** @type {RegExp} */ (message)), String(text));
    }
  });
});

describe('sender keys', () => {
  test('round trip between two participants', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const kid = kidOf(alice.senderId, 3);
    const body = await alice.wrapSenderKey(await announced(bob, alice), kid, SENDER_KEY);
    assert.deepEqual(await bob.unwrapSenderKey(await announced(alice, bob), body),
      { kid, senderKey: SENDER_KEY });
    assert.deepEqual(Object.keys(JSON.parse(body)), ['t', 'kid', 'key']);
  });

  test('refuses a key wrapped for someone else', async () => {
    const [alice, bob, carol] = [await participant(), await participant(), await participant()];
    const body = await alice.wrapSenderKey(await announced(bob, alice), kidOf(alice.senderId, 0), SENDER_KEY);
    await assert.rejects(carol.unwrapSenderKey(await announced(alice, carol), body),
      e2eeError(/failed to decrypt/));
  });

  test('refuses a KID that names another sender', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const body = await alice.wrapSenderKey(await announced(bob, alice), kidOf(alice.senderId, 0), SENDER_KEY);
    const tampered = changed(body, { kid: kidOf(bob.senderId, 0) });
    await assert.rejects(bob.unwrapSenderKey(await announced(alice, bob), tampered),
      e2eeError(/names another sender/));
  });

  test('refuses a changed epoch', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const body = await alice.wrapSenderKey(await announced(bob, alice), kidOf(alice.senderId, 0), SENDER_KEY);
    const tampered = changed(body, { kid: kidOf(alice.senderId, 1) });
    await assert.rejects(bob.unwrapSenderKey(await announced(alice, bob), tampered),
      e2eeError(/failed to decrypt/));
  });

  test('a peer key with no shared secret fails as an E2eeError, and again next time', async () => {
    const [alice, bob] = [await participant(), await participant()];
    const lowOrder = { ...(await announced(bob, alice)), xPublic: new Uint8Array(32) };
    for (let attempt = 0; attempt < 2; attempt += 1) {
      await assert.rejects(alice.wrapSenderKey(lowOrder, kidOf(alice.senderId, 0), SENDER_KEY),
        e2eeError(/no shared secret/));
    }
  });

  test('an announcement with a low-order key is refused when it is opened', async () => {
    const [alice, bob] = [await participant(), await participant()];
    alice.xPublic = new Uint8Array(32); // a participant with the link announces a useless key
    await assert.rejects(bob.openAnnouncement(await alice.announce('Mallory')),
      e2eeError(/no shared secret/));
  });
});

describe('chat', () => {
  test('round trip under the sender key', async () => {
    const kid = kidOf(0x0a11ce, 2);
    const parsed = parseChat(await sealChat(kid, 5, SENDER_KEY, 'hello 👋'));
    assert.equal(parsed.kid, kid);
    assert.equal(parsed.seq, 5);
    assert.equal(await openChat(parsed.kid, parsed.seq, SENDER_KEY, parsed.sealed), 'hello 👋');
  });

  test('refuses another key, another KID and another number', async () => {
    const kid = kidOf(0x0a11ce, 2);
    const { sealed } = parseChat(await sealChat(kid, 5, SENDER_KEY, 'hi'));
    await assert.rejects(openChat(kid, 5, await ratchet(SENDER_KEY), sealed), e2eeError(/failed to decrypt/));
    await assert.rejects(openChat(kid + 1, 5, SENDER_KEY, sealed), e2eeError(/failed to decrypt/));
    await assert.rejects(openChat(kid, 6, SENDER_KEY, sealed), e2eeError(/failed to decrypt/));
  });

  test('refuses malformed chat bodies', () => {
    assert.throws(() => parseChat('hi'), e2eeError(/not JSON/));
    assert.throws(() => parseChat('{"kid": "1", "n": 0, "c": ""}'), e2eeError(/malformed/));
    assert.throws(() => parseChat('{"kid": 1, "c": ""}'), e2eeError(/malformed/));
    assert.throws(() => parseChat('{"kid": 1, "n": -1, "c": ""}'), e2eeError(/malformed/));
    assert.throws(() => parseChat('{"kid": 1, "n": 0, "c": "A"}'), e2eeError(/not base64/));
  });

  test('a message delivered twice, or far behind the newest, is refused', () => {
    const window = new ChatWindow();
    assert.equal(window.accept(1, 0), '');
    assert.equal(window.accept(1, 0), 'delivered twice');
    assert.equal(window.accept(2, 0), '', 'another sender counts on its own');
    assert.equal(window.accept(1, 2), '');
    assert.equal(window.accept(1, 1), '', 'a little out of order is fine');
    assert.equal(window.accept(1, 1), 'delivered twice');
    assert.equal(window.accept(1, 2 + CHAT_WINDOW), '');
    assert.equal(window.accept(1, 2), 'too old');
    assert.equal(window.accept(1, 3), '');
    window.forget(1);
    assert.equal(window.accept(1, 0), '', 'a sender who left is forgotten');
  });
});

describe('ratchet, KID, security code and fingerprint', () => {
  test('the ratchet is deterministic and moves the key', async () => {
    const once = await ratchet(SENDER_KEY);
    assert.deepEqual(await ratchet(SENDER_KEY), once);
    assert.notDeepEqual(once, SENDER_KEY);
    assert.notDeepEqual(await ratchet(once), once);
    assert.equal(once.length, 32);
  });

  test('the ratchet is HKDF with the ratchet label', async () => {
    assert.deepEqual(await ratchet(SENDER_KEY), await hkdf(SENDER_KEY, new Uint8Array(0), 'confide/1 ratchet'));
  });

  test('KID is sender id * 256 + epoch mod 256', () => {
    assert.equal(kidOf(5, 3), 1283);
    assert.equal(kidOf(5, 259), 1283);
    assert.equal(kidOf(2 ** 24 - 1, 255), 2 ** 32 - 1);
  });

  test('the security code does not depend on order', async () => {
    const keys = [await participant(), await participant(), await participant()].map((k) => k.identity);
    const code = await securityCode(MEETING_ID, keys);
    assert.match(code, /^\d{5}( \d{5}){4}$/);
    assert.equal(await securityCode(MEETING_ID, [keys[2], keys[0], keys[1]]), code);
    assert.equal(await securityCode(MEETING_ID, [keys[1], keys[2], keys[0]]), code);
    assert.notEqual(await securityCode('another-meeting', keys), code);
  });

  test('the security code changes when a key is substituted', async () => {
    const keys = [await participant(), await participant()].map((k) => k.identity);
    const substituted = concat(keys[1]);
    substituted[20] ^= 0x01;
    assert.notEqual(await securityCode(MEETING_ID, [keys[0], substituted]), await securityCode(MEETING_ID, keys));
  });

  test('a fingerprint is 16 hex digits in groups of 4', async () => {
    const alice = await participant();
    assert.match(await fingerprint(alice.identity), /^[0-9a-f]{4}( [0-9a-f]{4}){3}$/);
  });
});

describe('liveness', () => {
  test('a fresh challenge signed by the announced identity checks out', async () => {
    const alice = await participant();
    const bob = await participant();
    const aliceSeenByBob = await announced(alice, bob, 'Alice');
    const bobSeenByAlice = await announced(bob, alice, 'Bob');
    const challenge = crypto.getRandomValues(new Uint8Array(16));
    const proof = await alice.proveLive(challenge, bobSeenByAlice.sPublic);
    assert.equal(await bob.checkLive(aliceSeenByBob, challenge, proof), true);
  });

  test('an answer to another challenge, or for another verifier, does not', async () => {
    const alice = await participant();
    const bob = await participant();
    const carol = await participant();
    const aliceSeenByBob = await announced(alice, bob, 'Alice');
    const aliceSeenByCarol = await announced(alice, carol, 'Alice');
    const bobSeenByAlice = await announced(bob, alice, 'Bob');
    const challenge = crypto.getRandomValues(new Uint8Array(16));
    const proof = await alice.proveLive(challenge, bobSeenByAlice.sPublic);
    const other = crypto.getRandomValues(new Uint8Array(16));
    assert.equal(await bob.checkLive(aliceSeenByBob, other, proof), false);
    // Carol cannot reuse what Alice signed for Bob, even with Bob's challenge.
    assert.equal(await carol.checkLive(aliceSeenByCarol, challenge, proof), false);
  });
});
