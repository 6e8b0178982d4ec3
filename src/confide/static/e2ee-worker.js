// @ts-check
/**
 * The frame transform: SFrame (RFC 9605) on every outgoing audio, video and
 * screen frame, and on every incoming one, through RTCRtpScriptTransform.
 *
 * The first bytes of a frame that the packetiser and depacketiser read stay
 * clear and are bound as AAD: the Opus TOC byte, and the VP8 payload header
 * (10 bytes on a key frame, 3 on a delta frame), as Jitsi does. A frame with no
 * key to encrypt it is dropped, never sent in the clear. A frame that fails to
 * decrypt is dropped and counted, never passed on to the decoder.
 */
import { SFrameError, SFrameReceiver, SFrameSender, decodeHeader } from './sframe.js';
import { ratchet } from './e2ee.js';

const GRACE_MS = 5000;
const MAX_RATCHET_STEPS = 16;
const STATS_INTERVAL_MS = 1000;

/** @type {{kid: number, sframe: SFrameSender} | null} */
let sender = null;
const receiver = new SFrameReceiver();
/** Receive keys by sender id, then epoch: kept to ratchet forward on demand. @type {Map<number, Map<number, Uint8Array>>} */
const keysBySender = new Map();
/** @type {Map<number, number>} the epoch each sender was last seen using */
const currentEpoch = new Map();
const sending = { encrypted: 0, dropped: 0 };
/** @type {Map<string, {decrypted: number, failed: number, unknownKey: number, mislabelled: number, kid: number}>} by receive slot */
const receiving = new Map();
/**
 * The sender ids whose frames each receive slot may show: the participant the page
 * shows in that tile (and, while a slot changes hands, the one before). The server
 * decides which stream goes to which slot; this is how a page checks it.
 * @type {Map<string, Set<number>>}
 */
const slotSenders = new Map();

/** @param {number} kid @param {Uint8Array} key */
function addReceiveKey(kid, key) {
  const senderId = Math.floor(kid / 256);
  if (!keysBySender.has(senderId)) keysBySender.set(senderId, new Map());
  keysBySender.get(senderId)?.set(kid % 256, key);
  receiver.addKey(kid, key).catch(() => {});
}

/** @param {number} senderId */
function forgetSender(senderId) {
  for (const epoch of keysBySender.get(senderId)?.keys() ?? []) receiver.removeKey(senderId * 256 + epoch);
  keysBySender.delete(senderId);
  currentEpoch.delete(senderId);
}

/** After someone joined, a sender's next epoch is the ratchet of its last: derive it here. @param {number} kid */
async function ratchetTo(kid) {
  const senderId = Math.floor(kid / 256);
  const epoch = kid % 256;
  const known = keysBySender.get(senderId);
  if (!known) return false;
  for (let steps = 1; steps <= MAX_RATCHET_STEPS; steps += 1) {
    const base = known.get((epoch - steps + 256) % 256);
    if (!base) continue;
    let key = base;
    for (let i = 1; i <= steps; i += 1) {
      key = await ratchet(key);
      if (!known.has((epoch - steps + i + 256) % 256)) addReceiveKey(senderId * 256 + ((epoch - steps + i + 256) % 256), key);
    }
    return true;
  }
  return false;
}

/** Once a sender uses a new epoch, its older keys stop working after a grace period. @param {number} kid */
function noteEpoch(kid) {
  const senderId = Math.floor(kid / 256);
  const epoch = kid % 256;
  if (currentEpoch.get(senderId) === epoch) return;
  currentEpoch.set(senderId, epoch);
  setTimeout(() => {
    const known = keysBySender.get(senderId);
    if (!known || currentEpoch.get(senderId) !== epoch) return;
    for (const old of [...known.keys()]) {
      const behind = (epoch - old + 256) % 256;
      if (behind > 0 && behind < 128) {
        known.delete(old);
        receiver.removeKey(senderId * 256 + old);
      }
    }
  }, GRACE_MS);
}

/** @param {RTCEncodedVideoFrame | RTCEncodedAudioFrame} frame @param {string} kind */
function clearLength(frame, kind) {
  if (kind === 'audio') return 1;
  return /** @type {RTCEncodedVideoFrame} */ (frame).type === 'key' ? 10 : 3;
}

/** @param {string} kind */
function encryptor(kind) {
  return new TransformStream({
    async transform(frame, controller) {
      if (!sender) { sending.dropped += 1; return; }
      const data = new Uint8Array(frame.data);
      if (data.length === 0 && kind === 'audio') {
        // An empty frame (Opus DTX sends them in silence) holds nothing to protect,
        // and the receiver could not tell its SFrame header from a clear byte.
        controller.enqueue(frame);
        return;
      }
      const clear = Math.min(clearLength(frame, kind), data.length);
      const metadata = data.subarray(0, clear);
      const sealed = await sender.sframe.encrypt(data.subarray(clear), metadata);
      const out = new Uint8Array(clear + sealed.length);
      out.set(metadata, 0);
      out.set(sealed, clear);
      frame.data = out.buffer;
      sending.encrypted += 1;
      controller.enqueue(frame);
    },
  });
}

/** @param {string} kind @param {string} slot */
function decryptor(kind, slot) {
  // `unknownKey`: failures only for want of the key (it may still be on its way).
  const counts = { decrypted: 0, failed: 0, unknownKey: 0, mislabelled: 0, kid: -1 };
  receiving.set(slot, counts);
  return new TransformStream({
    async transform(frame, controller) {
      const data = new Uint8Array(frame.data);
      if (data.length === 0 && kind === 'audio') { controller.enqueue(frame); return; } // see encryptor
      const clear = clearLength(frame, kind);
      try {
        if (data.length <= clear) throw new Error('frame too short');
        const metadata = data.subarray(0, clear);
        const sealed = data.subarray(clear);
        const id = Number(decodeHeader(sealed).kid);
        const from = Math.floor(id / 256);
        if (!slotSenders.get(slot)?.has(from)) {
          // A frame of someone else we hold keys for, in this tile: the server relabelled
          // a stream. Anything else with a stray KID is only undecryptable.
          if (!keysBySender.has(from)) throw new Error('no key for this KID');
          counts.mislabelled += 1;
          return;
        }
        let plain;
        try {
          plain = await receiver.decrypt(sealed, metadata);
        } catch (error) {
          const unknown = error instanceof SFrameError && error.reason === 'unknown-kid';
          if (!unknown || !(await ratchetTo(id))) throw error;
          plain = await receiver.decrypt(sealed, metadata);
        }
        const out = new Uint8Array(clear + plain.length);
        out.set(metadata, 0);
        out.set(plain, clear);
        frame.data = out.buffer;
        counts.decrypted += 1;
        counts.kid = id;
        noteEpoch(id);
        controller.enqueue(frame);
      } catch (error) {
        // Unknown KID, bad tag, replay, truncated: drop it; the tile shows the failures.
        counts.failed += 1;
        if (error instanceof SFrameError && error.reason === 'unknown-kid') counts.unknownKey += 1;
      }
    },
  });
}

/** @param {any} event */
function onTransform(event) {
  const transformer = event.transformer;
  const { operation, kind, slot } = transformer.options;
  const stream = operation === 'encrypt' ? encryptor(kind) : decryptor(kind, String(slot));
  transformer.readable.pipeThrough(stream).pipeTo(transformer.writable).catch(() => {});
}

/** @param {MessageEvent} event */
function onMessage(event) {
  const message = event.data;
  if (message.type === 'send-key') {
    sender = message.key ? { kid: message.kid, sframe: new SFrameSender(message.key, message.kid) } : null;
  } else if (message.type === 'receive-key') {
    addReceiveKey(message.kid, message.key);
  } else if (message.type === 'slot-senders') {
    slotSenders.set(String(message.slot), new Set(message.senderIds));
  } else if (message.type === 'forget-sender') {
    forgetSender(message.senderId);
  }
}

const scope = /** @type {any} */ (self);
scope.onrtctransform = onTransform;
scope.onmessage = onMessage;
setInterval(() => {
  scope.postMessage({ type: 'stats', sending: { ...sending }, receiving: Object.fromEntries(receiving) });
}, STATS_INTERVAL_MS);
