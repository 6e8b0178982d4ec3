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
  const count = container.childElementCount;
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
 * 0 for one scrolled out of the grid's sight or not laid out. A tab in the background
 * still counts as shown: coming back to it should not wait for video.
 * @param {HTMLElement} grid
 * @param {Array<{id: string, tile: HTMLElement}>} people
 * @param {number} pixelRatio
 * @returns {Record<string, number>}
 */
export function cameraTileHeights(grid, people, pixelRatio) {
  const sight = grid.getBoundingClientRect();
  /** @type {Record<string, number>} */
  const heights = {};
  for (const { id, tile } of people) {
    const box = tile.getBoundingClientRect();
    const onScreen = box.height > 0 && box.bottom > sight.top && box.top < sight.bottom
      && box.right > sight.left && box.left < sight.right;
    heights[`${id}:camera`] = onScreen ? Math.round(box.height * pixelRatio) : 0;
  }
  return heights;
}
