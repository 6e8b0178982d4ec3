// src/confide/static/layout.js on its own: how tall each camera tile is on screen,
// what the SFU picks each camera's simulcast layer from.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { cameraTileHeights } from '../../src/confide/static/layout.js';

/** A stand-in for an element: only its box. */
const box = (top, left, height, width = height * 16 / 9) => ({
  getBoundingClientRect: () => ({ top, left, height, width, bottom: top + height, right: left + width }),
});

const grid = box(0, 0, 600, 1000);

test('a tile in the grid gives its height in device pixels', () => {
  const heights = cameraTileHeights(grid, [{ id: 'a', tile: box(10, 10, 180) }], 2);
  assert.deepEqual(heights, { 'a:camera': 360 });
});

test('a tile scrolled out of the grid, or not laid out, gives 0', () => {
  const heights = cameraTileHeights(grid, [
    { id: 'below', tile: box(650, 10, 180) },
    { id: 'above', tile: box(-200, 10, 180) },
    { id: 'hidden', tile: box(0, 0, 0, 0) },
    { id: 'partly', tile: box(500, 10, 180) },
  ], 1);
  assert.deepEqual(heights, { 'below:camera': 0, 'above:camera': 0, 'hidden:camera': 0, 'partly:camera': 180 });
});
