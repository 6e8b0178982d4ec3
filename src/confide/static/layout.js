// @ts-check
/**
 * Where the meeting's tiles go: the grid's column count for the space it has, and
 * how tall each camera tile is on screen, which the SFU picks a layer from. No state
 * of the meeting: elements in, numbers out.
 */

/**
 * Picks the column count that makes 16:9 tiles as large as possible in the
 * container, and hands the result to CSS as --cols and --tile-width.
 * @param {HTMLElement} container
 * @param {number} minWidth tiles never shrink below this; the container scrolls instead
 */
export function fitTiles(container, minWidth) {
  const count = [...container.children].filter((child) => !(/** @type {HTMLElement} */ (child).hidden)).length;
  if (count === 0) return;
  const styles = getComputedStyle(container);
  const gap = parseFloat(styles.columnGap) || 0;
  const width = container.clientWidth;
  const height = container.clientHeight;
  if (width === 0 || height === 0) return;

  let best = { cols: 1, tileWidth: 0 };
  for (let cols = 1; cols <= count; cols++) {
    const rows = Math.ceil(count / cols);
    const byWidth = (width - gap * (cols - 1)) / cols;
    const byHeight = ((height - gap * (rows - 1)) / rows) * (16 / 9);
    const tileWidth = Math.min(byWidth, byHeight);
    if (tileWidth > best.tileWidth + 0.5) best = { cols, tileWidth };
  }
  if (best.tileWidth < minWidth) {
    const tileWidth = Math.min(minWidth, width);
    best = { cols: Math.max(1, Math.floor((width + gap) / (tileWidth + gap))), tileWidth };
  }
  container.style.setProperty('--cols', String(best.cols));
  container.style.setProperty('--tile-width', `${Math.floor(best.tileWidth)}px`);
}

/**
 * Each other person's camera tile height on screen in device pixels, by stream id;
 * 0 for one scrolled out of sight of the area it is in (the grid, the strip, the
 * stage) or not laid out. A tab in the background still counts as shown: coming back
 * to it should not wait for video.
 * @param {Array<{id: string, tile: HTMLElement}>} people
 * @param {number} pixelRatio
 * @returns {Record<string, number>}
 */
export function cameraTileHeights(people, pixelRatio) {
  /** @type {Record<string, number>} */
  const heights = {};
  for (const { id, tile } of people) {
    const box = tile.getBoundingClientRect();
    const sight = tile.parentElement?.getBoundingClientRect();
    const onScreen = Boolean(sight) && box.height > 0 && box.bottom > sight.top
      && box.top < sight.bottom && box.right > sight.left && box.left < sight.right;
    heights[`${id}:camera`] = onScreen ? Math.round(box.height * pixelRatio) : 0;
  }
  return heights;
}

/** A gallery page shows at most this many tiles: more decoders than that slow any device. */
export const GALLERY_PAGE_SIZE = 25;

/**
 * Which tiles gallery page `page` shows of `count`: [first, end), with the page
 * clamped to those there are.
 * @param {number} count @param {number} page @param {number} [size]
 * @returns {{first: number, end: number, page: number, pages: number}}
 */
export function galleryPage(count, page, size = GALLERY_PAGE_SIZE) {
  const pages = Math.max(1, Math.ceil(count / size));
  const current = Math.min(Math.max(0, Math.floor(page)), pages - 1);
  return { first: current * size, end: Math.min(count, (current + 1) * size), page: current, pages };
}

/**
 * Who the speaker view shows large: the pinned person while they are here, else the
 * last one heard who is still here, else the first of the others; null when alone.
 * @param {string | null} pinned @param {string | null} speaker @param {string[]} others
 */
export function featuredId(pinned, speaker, others) {
  if (pinned && others.includes(pinned)) return pinned;
  if (speaker && others.includes(speaker)) return speaker;
  return others[0] ?? null;
}
