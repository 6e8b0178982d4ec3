// @ts-check
/**
 * This browser's identity in a meeting: an Ed25519 key pair whose private half
 * cannot leave the browser (non-extractable), kept in IndexedDB under the meeting
 * id. A reconnect or a reload is then the same person: the host's admission pass
 * names this key, so they come back without the lobby, and the security code and
 * their fingerprint stay the same. Each connection still gets fresh X25519 keys
 * (MeetingKeys.newConnectionKeys). No DOM.
 *
 * One page holds a meeting's identity at a time (a Web Lock): a second tab on the
 * same meeting is a second person, with a key of its own that is not kept.
 */

const DB_NAME = 'confide-identities';
/** Meetings whose kept identity this page holds (and so may write). */
const held = new Set();

/** @param {IDBRequest} request */
const done = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

async function database() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore('identities');
  return /** @type {IDBDatabase} */ (await done(request));
}

/**
 * Hold the meeting's identity lock for as long as this page lives; false when
 * another page holds it (or the browser has no Web Locks). @param {string} name
 * @returns {Promise<boolean>}
 */
function holdLock(name) {
  if (!navigator.locks) return Promise.resolve(false);
  return new Promise((resolve) => {
    navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      resolve(lock !== null);
      // Held until the page goes: a promise that never settles.
      return lock ? new Promise(() => {}) : undefined;
    }).catch(() => resolve(false));
  });
}

/**
 * @typedef {{signing: CryptoKeyPair, reveal: Uint8Array, pass: any}} Identity
 * `reveal`: the 16 secret bytes its announcements commit to (MeetingKeys.codeCommitment);
 * `pass`: the host's admission pass for this identity, once there is one (null before).
 * @returns {Promise<Identity>}
 */
const newIdentity = async () => ({
  signing: /** @type {CryptoKeyPair} */ (
    await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify'])),
  reveal: crypto.getRandomValues(new Uint8Array(16)),
  pass: null,
});

/**
 * This browser's identity for a meeting: the kept one, or a new one that is kept
 * from now on. @param {string} meetingId @returns {Promise<Identity>}
 */
export async function meetingIdentity(meetingId) {
  if (!held.has(meetingId) && !await holdLock(`confide-identity-${meetingId}`)) return newIdentity();
  held.add(meetingId);
  try {
    const db = await database();
    const kept = await done(db.transaction('identities').objectStore('identities').get(meetingId));
    if (kept?.signing?.privateKey instanceof CryptoKey && kept.reveal instanceof Uint8Array) {
      db.close();
      return kept;
    }
    const identity = await newIdentity();
    await done(db.transaction('identities', 'readwrite').objectStore('identities').put(identity, meetingId));
    db.close();
    return identity;
  } catch {
    return newIdentity(); // private browsing without IndexedDB: an identity for this page only
  }
}

/**
 * Keep the admission pass with the identity it names, so that a reload comes back
 * without the lobby too (a reconnect has it in memory). Only the page holding the
 * identity's lock writes. @param {string} meetingId @param {any} pass
 */
export async function keepPass(meetingId, pass) {
  if (!held.has(meetingId)) return;
  try {
    const db = await database();
    const store = db.transaction('identities', 'readwrite').objectStore('identities');
    const kept = await done(store.get(meetingId));
    if (kept?.signing) await done(store.put({ ...kept, pass }, meetingId));
    db.close();
  } catch {
    // Not kept: after a reload, the lobby again.
  }
}

/** The meeting is over: its identity is of no more use. @param {string} meetingId */
export async function forgetMeetingIdentity(meetingId) {
  try {
    const db = await database();
    await done(db.transaction('identities', 'readwrite').objectStore('identities').delete(meetingId));
    db.close();
  } catch {
    // Nothing kept, nothing to forget.
  }
}
