// @ts-check
/**
 * DOM helpers for the UI: elements by id, new elements, the inline SVG icons, and
 * avatar colours and initials. No state of the meeting.
 */

const AVATAR_COLOURS = ['#5b7cfa', '#2f9e7a', '#c46a3c', '#9b5cd6', '#cc4f7a', '#3a90b5', '#7f8a2e', '#b8524f'];

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @returns {T}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing element #${id}`);
  return /** @type {T} */ (element);
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

const SLASH = ['path', { d: 'M3 3l18 18' }];
/** Icon shapes as [tag, attributes] lists, drawn on a 24x24 grid with a 2px stroke. */
const ICONS = /** @type {Record<string, Array<[string, Record<string, string>]>>} */ ({
  mic: [['rect', { x: '9', y: '2.5', width: '6', height: '11.5', rx: '3' }], ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v3.5' }]],
  'mic-off': [['rect', { x: '9', y: '2.5', width: '6', height: '11.5', rx: '3' }], ['path', { d: 'M5 11a7 7 0 0 0 14 0M12 18v3.5' }], /** @type {any} */ (SLASH)],
  camera: [['rect', { x: '2', y: '6', width: '13.5', height: '12', rx: '2.5' }], ['path', { d: 'M15.5 10.2 21.5 7v10l-6-3.2' }]],
  'camera-off': [['rect', { x: '2', y: '6', width: '13.5', height: '12', rx: '2.5' }], ['path', { d: 'M15.5 10.2 21.5 7v10l-6-3.2' }], /** @type {any} */ (SLASH)],
  screen: [['rect', { x: '2', y: '3.5', width: '20', height: '13.5', rx: '2' }], ['path', { d: 'M8 21h8M12 17v4M12 13.5V7.5M9 10.5l3-3 3 3' }]],
  'screen-stop': [['rect', { x: '2', y: '3.5', width: '20', height: '13.5', rx: '2' }], ['path', { d: 'M8 21h8M12 17v4M9.5 7.8l5 5M14.5 7.8l-5 5' }]],
  link: [['path', { d: 'M10 13.5a4.5 4.5 0 0 0 6.4.4l3-3a4.5 4.5 0 0 0-6.4-6.4l-1.6 1.6' }], ['path', { d: 'M14 10.5a4.5 4.5 0 0 0-6.4-.4l-3 3a4.5 4.5 0 0 0 6.4 6.4l1.6-1.6' }]],
  leave: [['path', { d: 'M12 9.5c-3.7 0-7 1.2-9.3 3.3-.5.5-.6 1.2-.2 1.8l1.3 1.8c.4.5 1.1.7 1.7.4l2.6-1.2c.5-.2.8-.7.8-1.2v-2.1c2-.6 4.2-.6 6.2 0v2.1c0 .5.3 1 .8 1.2l2.6 1.2c.6.3 1.3.1 1.7-.4l1.3-1.8c.4-.6.3-1.3-.2-1.8-2.3-2.1-5.6-3.3-9.3-3.3z', fill: 'currentColor', stroke: 'none' }]],
  chat: [['path', { d: 'M20 3.5H4a2 2 0 0 0-2 2v15.5l4.2-3.5H20a2 2 0 0 0 2-2v-10a2 2 0 0 0-2-2z' }], ['path', { d: 'M7 9h10M7 12.5h6' }]],
  people: [['circle', { cx: '9', cy: '8', r: '3.5' }], ['path', { d: 'M2.5 20.5a6.5 6.5 0 0 1 13 0M15.5 4.6a3.5 3.5 0 0 1 0 6.8M18.5 14.2a6.5 6.5 0 0 1 3 6.3' }]],
  send: [['path', { d: 'M21.5 2.5 10.5 13.5M21.5 2.5l-7 19-4-8-8-4z' }]],
  close: [['path', { d: 'M18 6 6 18M6 6l12 12' }]],
  lock: [['rect', { x: '4.5', y: '10.5', width: '15', height: '11', rx: '2.5' }], ['path', { d: 'M8 10.5V7a4 4 0 0 1 8 0v3.5' }]],
  server: [['rect', { x: '3', y: '3.5', width: '18', height: '7', rx: '2' }], ['rect', { x: '3', y: '13.5', width: '18', height: '7', rx: '2' }], ['path', { d: 'M7 7h.01M7 17h.01' }]],
  check: [['path', { d: 'M20 6 9 17l-5-5' }]],
  'speaker-view': [['rect', { x: '2.5', y: '3', width: '19', height: '12', rx: '2' }], ['rect', { x: '2.5', y: '17.5', width: '5', height: '3.5', rx: '1' }], ['rect', { x: '9.5', y: '17.5', width: '5', height: '3.5', rx: '1' }], ['rect', { x: '16.5', y: '17.5', width: '5', height: '3.5', rx: '1' }]],
  gallery: [['rect', { x: '2.5', y: '3.5', width: '8.5', height: '7.5', rx: '1.5' }], ['rect', { x: '13', y: '3.5', width: '8.5', height: '7.5', rx: '1.5' }], ['rect', { x: '2.5', y: '13', width: '8.5', height: '7.5', rx: '1.5' }], ['rect', { x: '13', y: '13', width: '8.5', height: '7.5', rx: '1.5' }]],
  pin: [['path', { d: 'M9 3.5h6M10 3.5v6l-3.5 4h11L14 9.5v-6M12 13.5V21' }]],
  previous: [['path', { d: 'M15 5l-7 7 7 7' }]],
  next: [['path', { d: 'M9 5l7 7-7 7' }]],
});

/**
 * An inline SVG icon (no icon fonts or image files: the CSP allows only this origin).
 * @param {string} name
 * @returns {SVGSVGElement}
 */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = /** @type {SVGSVGElement} */ (document.createElementNS(ns, 'svg'));
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon', `icon-${name}`);
  for (const [tag, attributes] of ICONS[name] || []) {
    const shape = document.createElementNS(ns, tag);
    for (const [key, value] of Object.entries(attributes)) shape.setAttribute(key, value);
    svg.append(shape);
  }
  return svg;
}

/**
 * Puts `name`'s icon in an element, replacing the icon it had.
 * @param {Element} element
 * @param {string} name
 */
export function setIcon(element, name) {
  const old = element.querySelector(':scope > svg.icon');
  const fresh = icon(name);
  if (old) old.replaceWith(fresh);
  else element.prepend(fresh);
}

/** Fills the decorative icon placeholders that the HTML pages leave empty. */
export function fillIconPlaceholders() {
  for (const [selector, name] of [['.lock-icon', 'lock'], ['.link-icon', 'link'], ['.server-icon', 'server']]) {
    document.querySelectorAll(selector).forEach((element) => setIcon(element, name));
  }
}

/**
 * A colour for an avatar, stable for a given id so a person keeps their colour.
 * @param {string} key
 */
export function avatarColour(key) {
  let hash = 0;
  for (const char of key) hash = (hash * 31 + char.charCodeAt(0)) | 0;
  return AVATAR_COLOURS[Math.abs(hash) % AVATAR_COLOURS.length];
}

/** @param {string} name */
export function initial(name) {
  const first = Array.from(name.trim())[0];
  return first ? first.toLocaleUpperCase() : '?';
}
