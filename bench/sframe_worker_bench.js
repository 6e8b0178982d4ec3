// Runs inside a dedicated Worker, as the frame transform does: how many frames of
// a given size SFrame encrypts and decrypts per second, with the same clear VP8
// header bytes bound as AAD as e2ee-worker.js binds.
import { SFrameReceiver, SFrameSender } from '/static/sframe.js';

onmessage = async (event) => {
  const { seconds, size } = event.data;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sender = new SFrameSender(key, 0x12345600);
  const receiver = new SFrameReceiver();
  await receiver.addKey(0x12345600, key);
  const frame = crypto.getRandomValues(new Uint8Array(size));
  const clear = frame.subarray(0, 3);
  let encrypted = 0;
  let sealed = new Uint8Array(0);
  let start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    sealed = await sender.encrypt(frame.subarray(3), clear);
    encrypted += 1;
  }
  const encryptRate = encrypted / ((performance.now() - start) / 1000);
  const frames = [];
  for (let i = 0; i < 2000; i += 1) frames.push(await sender.encrypt(frame.subarray(3), clear));
  let decrypted = 0;
  start = performance.now();
  for (const f of frames) {
    await receiver.decrypt(f, clear);
    decrypted += 1;
    if (performance.now() - start > seconds * 1000) break;
  }
  const decryptRate = decrypted / ((performance.now() - start) / 1000);
  postMessage({ encryptRate, decryptRate, overhead: sealed.length - (size - 3) });
};
