// src/confide/static/host.js on its own: signed host actions, and what a client
// refuses of them whatever the server relays: someone else's signature, co-host
// overreach, stale, replayed and reordered actions.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { webcrypto } from 'node:crypto';

globalThis.crypto ??= /** @type {any} */ (webcrypto);

const {
  ACTION_MAX_AGE_MS, ActionGuard, HostKey, b64url, hostKeyHash, passAdmits, policyOf, signAction,
  verifyAction, verifySigned,
} = await import('../../src/confide/static/host.js');

const MEETING = 'm1';
const NOW = 1_800_000_000_000;

/** @param {Partial<{time: number, nonce: string, signer: string}>} fields */
function action(fields = {}) {
  return { time: NOW, nonce: 'n-0001', signer: 'host', ...fields };
}

describe('ActionGuard', () => {
  test('accepts a fresh action once', () => {
    const guard = new ActionGuard();
    assert.equal(guard.check(action(), NOW + 1000), '');
    assert.equal(guard.check(action(), NOW + 2000), 'replayed');
  });

  test('refuses an action older than the window, or dated beyond it', () => {
    const guard = new ActionGuard();
    assert.equal(guard.check(action({ time: NOW - ACTION_MAX_AGE_MS - 1 }), NOW), 'too old');
    assert.equal(guard.check(action({ time: NOW + ACTION_MAX_AGE_MS + 1 }), NOW), 'from the future');
    assert.equal(guard.check(action({ time: NOW - ACTION_MAX_AGE_MS + 1 }), NOW), '');
  });

  test('a three-day-old action is refused', () => {
    assert.equal(new ActionGuard().check(action({ time: NOW - 3 * 86_400_000 }), NOW), 'too old');
  });

  test('refuses a signer\'s older action after a newer one, not another signer\'s', () => {
    const guard = new ActionGuard();
    assert.equal(guard.check(action({ nonce: 'unlock', time: NOW }), NOW), '');
    assert.equal(guard.check(action({ nonce: 'lock', time: NOW - 10 }), NOW), 'out of order');
    assert.equal(guard.check(action({ nonce: 'cohost', time: NOW - 10, signer: 'cohost' }), NOW), '');
    assert.equal(guard.check(action({ nonce: 'same-ms', time: NOW }), NOW), '');
  });

  test('forgets nonces once they could no longer be fresh', () => {
    const guard = new ActionGuard();
    assert.equal(guard.check(action({ nonce: 'old' }), NOW), '');
    assert.equal(guard.check(action({ nonce: 'new', time: NOW + ACTION_MAX_AGE_MS + 5 }),
      NOW + ACTION_MAX_AGE_MS + 10), '');
    assert.equal(guard._seen.has('old'), false);
    assert.equal(guard._seen.has('new'), true);
  });
});

describe('verifyAction', () => {
  test('takes the host\'s signature and refuses anyone else\'s', async () => {
    const host = await HostKey.generate();
    const stranger = await HostKey.generate();
    const hash = await hostKeyHash(host.publicKey);
    const signed = await signAction(host.privateKey, host.publicKey, { meeting: MEETING, kind: 'lock' });
    const checked = await verifyAction(signed.action, signed.signature, hash, new Set());
    assert.equal(checked?.kind, 'lock');
    assert.equal(checked?.byHost, true);
    const forged = await signAction(stranger.privateKey, stranger.publicKey, { meeting: MEETING, kind: 'lock' });
    assert.equal(await verifyAction(forged.action, forged.signature, hash, new Set()), null);
    const altered = signed.action.replace('"lock"', '"unlock"');
    assert.equal(await verifyAction(altered, signed.signature, hash, new Set()), null);
  });

  test('a co-host may mute but not name co-hosts or change the link', async () => {
    const host = await HostKey.generate();
    const cohost = await HostKey.generate();
    const hash = await hostKeyHash(host.publicKey);
    const named = new Set([b64url(cohost.publicKey)]);
    for (const [kind, allowed] of [['mute', true], ['cohost', false], ['revoke-cohost', false], ['rekey-link', false]]) {
      const signed = await signAction(cohost.privateKey, cohost.publicKey,
        { meeting: MEETING, kind: String(kind), target: 'p1' });
      const checked = await verifyAction(signed.action, signed.signature, hash, named);
      assert.equal(checked !== null, allowed, String(kind));
    }
  });
});

describe('admission passes', () => {
  test('a host-signed admit admits the identity it names, and nobody else', async () => {
    const host = await HostKey.generate();
    const hash = await hostKeyHash(host.publicKey);
    const pass = await signAction(host.privateKey, host.publicKey,
      { meeting: MEETING, kind: 'admit', target: 'l1', params: { identity: 'bob-key' } });
    assert.equal(await passAdmits(pass, MEETING, hash, 'bob-key'), true);
    assert.equal(await passAdmits(pass, MEETING, hash, 'eve-key'), false);
    assert.equal(await passAdmits(pass, 'other-meeting', hash, 'bob-key'), false);
    assert.equal(await passAdmits(null, MEETING, hash, 'bob-key'), false);
    const mute = await signAction(host.privateKey, host.publicKey,
      { meeting: MEETING, kind: 'mute', target: 'l1', params: { identity: 'bob-key' } });
    assert.equal(await passAdmits(mute, MEETING, hash, 'bob-key'), false);
  });

  test('a co-host\'s admit holds only with the host\'s delegation of that key', async () => {
    const host = await HostKey.generate();
    const cohost = await HostKey.generate();
    const stranger = await HostKey.generate();
    const hash = await hostKeyHash(host.publicKey);
    const admit = await signAction(cohost.privateKey, cohost.publicKey,
      { meeting: MEETING, kind: 'admit', target: 'l1', params: { identity: 'bob-key' } });
    const delegation = await signAction(host.privateKey, host.publicKey,
      { meeting: MEETING, kind: 'cohost', target: 'p2', params: { key: b64url(cohost.publicKey) } });
    assert.equal(await passAdmits({ ...admit, delegation }, MEETING, hash, 'bob-key'), true);
    assert.equal(await passAdmits(admit, MEETING, hash, 'bob-key'), false);
    const selfMade = await signAction(cohost.privateKey, cohost.publicKey,
      { meeting: MEETING, kind: 'cohost', target: 'p2', params: { key: b64url(cohost.publicKey) } });
    assert.equal(await passAdmits({ ...admit, delegation: selfMade }, MEETING, hash, 'bob-key'), false);
    const other = await signAction(host.privateKey, host.publicKey,
      { meeting: MEETING, kind: 'cohost', target: 'p2', params: { key: b64url(stranger.publicKey) } });
    assert.equal(await passAdmits({ ...admit, delegation: other }, MEETING, hash, 'bob-key'), false);
  });
});

describe('signed policy', () => {
  const whole = { v: 3, locked: true, lobby: true, screen: 'host', chat: false };

  test('a policy action carries the whole policy, checked field by field', async () => {
    const host = await HostKey.generate();
    const hash = await hostKeyHash(host.publicKey);
    const signed = await signAction(host.privateKey, host.publicKey,
      { meeting: MEETING, kind: 'lock', params: { policy: whole } });
    assert.deepEqual(policyOf(await verifySigned(signed, MEETING, hash)), whole);
    for (const bad of [{ ...whole, v: 0 }, { ...whole, v: 1.5 }, { ...whole, locked: 'yes' },
      { ...whole, screen: 'all' }, { v: 4 }]) {
      assert.equal(policyOf({ kind: 'lock', params: { policy: bad } }), null, JSON.stringify(bad));
    }
    assert.equal(policyOf({ kind: 'mute', params: { policy: whole } }), null);
  });

  test('a policy signed by someone else is not taken', async () => {
    const host = await HostKey.generate();
    const stranger = await HostKey.generate();
    const signed = await signAction(stranger.privateKey, stranger.publicKey,
      { meeting: MEETING, kind: 'lobby', params: { policy: { ...whole, lobby: false } } });
    assert.equal(await verifySigned(signed, MEETING, await hostKeyHash(host.publicKey)), null);
  });
});
