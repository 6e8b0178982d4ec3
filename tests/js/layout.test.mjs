// src/confide/static/layout.js on its own: how tall each camera tile is on screen,
// what the SFU picks each camera's simulcast layer from.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GALLERY_PAGE_SIZE, cameraTileHeights, featuredId, galleryPage } from '../../src/confide/static/layout.js';

/** A stand-in for an element: only its box, and the area it is in. */
const box = (top, left, height, width = height * 16 / 9, parentElement = null) => ({
  parentElement,
  getBoundingClientRect: () => ({ top, left, height, width, bottom: top + height, right: left + width }),
});

const grid = box(0, 0, 600, 1000);
const stage = box(0, 1000, 600, 600);
/** A tile in the grid. */
const tile = (top, left, height, width) => box(top, left, height, width, grid);

test('a tile in the grid gives its height in device pixels', () => {
  const heights = cameraTileHeights([{ id: 'a', tile: tile(10, 10, 180) }], 2);
  assert.deepEqual(heights, { 'a:camera': 360 });
});

test('a tile scrolled out of the grid, or not laid out, gives 0', () => {
  const heights = cameraTileHeights([
    { id: 'below', tile: tile(650, 10, 180) },
    { id: 'above', tile: tile(-200, 10, 180) },
    { id: 'hidden', tile: tile(0, 0, 0, 0) },
    { id: 'partly', tile: tile(500, 10, 180) },
    { id: 'detached', tile: box(10, 10, 180) },
  ], 1);
  assert.deepEqual(heights, {
    'below:camera': 0, 'above:camera': 0, 'hidden:camera': 0, 'partly:camera': 180, 'detached:camera': 0,
  });
});

test('a tile in the stage, outside the grid, is seen within the stage', () => {
  const heights = cameraTileHeights([{ id: 'star', tile: box(0, 1000, 540, 600, stage) }], 1);
  assert.deepEqual(heights, { 'star:camera': 540 });
});

test('gallery pages hold at most 25 tiles and a page out of range is the nearest one', () => {
  assert.deepEqual(galleryPage(10, 0), { first: 0, end: 10, page: 0, pages: 1 });
  assert.deepEqual(galleryPage(101, 4), { first: 100, end: 101, page: 4, pages: 5 });
  assert.deepEqual(galleryPage(50, 9), { first: 25, end: 50, page: 1, pages: 2 });
  assert.deepEqual(galleryPage(0, -1), { first: 0, end: 0, page: 0, pages: 1 });
  assert.equal(GALLERY_PAGE_SIZE, 25);
});

test('the speaker view shows the pinned person, else the last one heard, else the first', () => {
  assert.equal(featuredId('b', 'c', ['b', 'c']), 'b');
  assert.equal(featuredId('gone', 'c', ['b', 'c']), 'c');
  assert.equal(featuredId(null, 'gone', ['b', 'c']), 'b');
  assert.equal(featuredId(null, null, []), null);
});
