// Encrypts or decrypts one SFrame frame with src/confide/static/sframe.js, for the
// Python/JavaScript cross-check in tests/test_sframe.py.
//
// stdin: {"op": "encrypt" | "decrypt", "key": hex base_key, "kid": n, "ctr": n,
//         "suite": n (optional, default 0x0004), "metadata": hex, "data": hex}
// kid and ctr may be JSON numbers or decimal strings (for values above 2^53); ctr is
// only used to encrypt. stdout: the frame (encrypt) or the plaintext (decrypt) in hex.
// On failure: the error on stderr and exit status 1.

import {
  SFrameReceiver,
  SFrameSender,
  AES_128_GCM_SHA256_128,
} from '../../src/confide/static/sframe.js';
import { webcrypto } from 'node:crypto';

// Debian's Node 18 has no global WebCrypto by default; Node 20 does.
globalThis.crypto ??= /** @type {any} */ (webcrypto);

/** @param {string} text */
const fromHex = (text) => Uint8Array.from(text.match(/../g) ?? [], (byte) => parseInt(byte, 16));
/** @param {Uint8Array} bytes */
const toHex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');

let input = '';
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const suite = request.suite ?? AES_128_GCM_SHA256_128;
const baseKey = fromHex(request.key);
const kid = BigInt(request.kid);
const metadata = fromHex(request.metadata ?? '');
const data = fromHex(request.data);

try {
  let output;
  if (request.op === 'encrypt') {
    const sender = new SFrameSender(baseKey, kid, suite, { ctr: BigInt(request.ctr ?? 0) });
    output = await sender.encrypt(data, metadata);
  } else if (request.op === 'decrypt') {
    const receiver = new SFrameReceiver(suite);
    await receiver.addKey(kid, baseKey);
    output = await receiver.decrypt(data, metadata);
  } else {
    throw new Error(`unknown op ${request.op}`);
  }
  process.stdout.write(`${toHex(output)}\n`);
} catch (error) {
  process.stderr.write(`${error}\n`);
  process.exitCode = 1;
}
