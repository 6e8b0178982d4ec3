// Drives src/confide/static/e2ee.js for the Python/JavaScript cross-check in
// tests/test_keys.py. One process holds one JavaScript participant (its private
// keys cannot leave WebCrypto), so an exchange runs as a sequence of steps.
//
// stdin: one JSON request per line; stdout: one JSON answer per line, in order.
// Bytes travel as hex. Requests ({"op": ..., ...}):
//   hkdf {secret, salt, info, length}               -> {okm}
//   ratchet {key, steps}                            -> {chain: [key after 1 step, ...]}
//   kid {senderId, epoch}                           -> {kid}
//   security-code {meetingId, keys: [identity, ...]} -> {code}
//   fingerprint {key}                               -> {fingerprint}
//   join {linkSecret, meetingId}                    -> {senderId, xPublic, sPublic, reveal}
//       (MeetingKeys.fromLink, then a fresh identity; the steps below use it)
//   announce {name}                                 -> {profile}
//   open-announcement {profile}                     -> {name, senderId, xPublic, sPublic, identity, commitment}
//   wrap {peer: profile, kid, key}                  -> {body}
//   unwrap {peer: profile, body}                    -> {kid, key}
//   seal-chat {kid, key, text}                      -> {body}
//   open-chat {body, key}                           -> {kid, text}
// A step that throws answers {error: message, e2ee: whether it was an E2eeError}.

import { createInterface } from 'node:readline';

import {
  E2eeError,
  MeetingKeys,
  fingerprint,
  hkdf,
  kidOf,
  openChat,
  parseChat,
  ratchet,
  sealChat,
  securityCode,
} from '../../src/confide/static/e2ee.js';
import { webcrypto } from 'node:crypto';

// Debian's Node 18 has no global WebCrypto by default; Node 20 does.
globalThis.crypto ??= /** @type {any} */ (webcrypto);

/** @param {string} text */
const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
/** @param {Uint8Array} bytes */
const toHex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');

/** @type {MeetingKeys | null} */
let keys = null;

function joined() {
  if (!keys) throw new Error('no join step yet');
  return keys;
}

/** @param {any} request @returns {Promise<object>} */
async function run(request) {
  switch (request.op) {
    case 'hkdf':
      return { okm: toHex(await hkdf(fromHex(request.secret), fromHex(request.salt), request.info, request.length)) };
    case 'ratchet': {
      const chain = [];
      let key = fromHex(request.key);
      for (let i = 0; i < request.steps; i += 1) {
        key = await ratchet(key);
        chain.push(toHex(key));
      }
      return { chain };
    }
    case 'kid':
      return { kid: kidOf(request.senderId, request.epoch) };
    case 'security-code':
      return { code: await securityCode(request.meetingId, request.keys.map(fromHex)) };
    case 'fingerprint':
      return { fingerprint: await fingerprint(fromHex(request.key)) };
    case 'join':
      keys = await MeetingKeys.fromLink(fromHex(request.linkSecret), request.meetingId);
      await keys.newIdentity();
      return { senderId: keys.senderId, xPublic: toHex(keys.xPublic), sPublic: toHex(keys.sPublic),
        reveal: toHex(keys.reveal) };
    case 'announce':
      return { profile: await joined().announce(request.name) };
    case 'open-announcement': {
      const peer = await joined().openAnnouncement(request.profile);
      return {
        name: peer.name,
        senderId: peer.senderId,
        xPublic: toHex(peer.xPublic),
        sPublic: toHex(peer.sPublic),
        identity: toHex(peer.identity),
        commitment: toHex(peer.commitment),
      };
    }
    case 'wrap': {
      const peer = await joined().openAnnouncement(request.peer);
      return { body: await joined().wrapSenderKey(peer, request.kid, fromHex(request.key)) };
    }
    case 'unwrap': {
      const peer = await joined().openAnnouncement(request.peer);
      const { kid, senderKey } = await joined().unwrapSenderKey(peer, request.body);
      return { kid, key: toHex(senderKey) };
    }
    case 'seal-chat':
      return { body: await sealChat(request.kid, request.seq, fromHex(request.key), request.text) };
    case 'open-chat': {
      const { kid, seq, sealed } = parseChat(request.body);
      return { kid, seq, text: await openChat(kid, seq, fromHex(request.key), sealed) };
    }
    default:
      throw new Error(`unknown op ${request.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await run(JSON.parse(line));
  } catch (error) {
    answer = { error: String(/** @type {Error} */ (error).message), e2ee: error instanceof E2eeError };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
