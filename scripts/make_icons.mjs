// Draws the app icons (PNG) for the web app manifest into www/icons/. The output is committed;
// rerun after changing the drawing:  node scripts/make_icons.mjs
//
// The drawing is a few shapes in a unit square (a white speech bubble holding the page's ◆ logo
// on an indigo gradient), rasterised with 4x4 supersampling, so no image library is needed.
// "any" icons have rounded corners and a transparent outside; "maskable" ones are full-bleed with
// the drawing shrunk into the central safe zone (a circle of radius 0.4), because launchers crop
// them to their own shape.

import { deflateSync } from 'node:zlib';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../www/icons');

const TOP = [0x63, 0x66, 0xf1];    // gradient, top-left (indigo 500)
const BOTTOM = [0x37, 0x30, 0xa3]; // gradient, bottom-right (indigo 800)
const WHITE = [0xff, 0xff, 0xff];
const LOGO = [0x4f, 0x46, 0xe5];   // the page's --accent

function inRoundRect(x, y, x0, y0, x1, y1, r) {
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const dx = Math.max(Math.abs(x - cx) - ((x1 - x0) / 2 - r), 0);
  const dy = Math.max(Math.abs(y - cy) - ((y1 - y0) / 2 - r), 0);
  return Math.abs(x - cx) <= (x1 - x0) / 2 && Math.abs(y - cy) <= (y1 - y0) / 2 && dx * dx + dy * dy <= r * r;
}

function inTriangle(x, y, [ax, ay], [bx, by], [cx, cy]) {
  const s1 = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
  const s2 = (cx - bx) * (y - by) - (cy - by) * (x - bx);
  const s3 = (ax - cx) * (y - cy) - (ay - cy) * (x - cx);
  return (s1 >= 0 && s2 >= 0 && s3 >= 0) || (s1 <= 0 && s2 <= 0 && s3 <= 0);
}

/** Colour [r, g, b, a] of the point (x, y) of the unit square, or null (transparent). */
function paint(x, y, maskable) {
  if (!maskable && !inRoundRect(x, y, 0, 0, 1, 1, 0.22)) return null;
  // The foreground is drawn for the "any" icon; the maskable one maps it into the safe zone.
  const s = maskable ? 0.78 : 1;
  const u = (x - 0.5) / s + 0.5, v = (y - 0.5) / s + 0.5;
  const inBubble = inRoundRect(u, v, 0.19, 0.22, 0.81, 0.68, 0.12)
    || inTriangle(u, v, [0.28, 0.6], [0.46, 0.6], [0.25, 0.82]);
  if (inBubble) {
    if (Math.abs(u - 0.5) + Math.abs(v - 0.45) <= 0.13) return LOGO;
    return WHITE;
  }
  const t = Math.min(1, Math.max(0, (x + y) / 2));
  return TOP.map((c, i) => Math.round(c + (BOTTOM[i] - c) * t));
}

function render(size, maskable) {
  const SS = 4;
  const px = Buffer.alloc(size * size * 4);
  for (let j = 0; j < size; j++) {
    for (let i = 0; i < size; i++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sj = 0; sj < SS; sj++) {
        for (let si = 0; si < SS; si++) {
          const c = paint((i + (si + 0.5) / SS) / size, (j + (sj + 0.5) / SS) / size, maskable);
          if (!c) continue;
          r += c[0]; g += c[1]; b += c[2]; a += 1;
        }
      }
      const o = (j * size + i) * 4;
      // Straight (non-premultiplied) alpha: average colour of the covered samples.
      if (a) { px[o] = Math.round(r / a); px[o + 1] = Math.round(g / a); px[o + 2] = Math.round(b / a); }
      px[o + 3] = Math.round((a / (SS * SS)) * 255);
    }
  }
  return px;
}

// ---------- PNG encoding (RGBA 8-bit, filter 0 on every row) ----------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

function png(size, rgba) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8;  // bit depth
  ihdr[9] = 6;  // colour type RGBA
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) rgba.copy(raw, y * (size * 4 + 1) + 1, y * size * 4, (y + 1) * size * 4);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

const ICONS = [
  ['icon-192.png', 192, false],
  ['icon-512.png', 512, false],
  ['maskable-512.png', 512, true],
  ['maskable-192.png', 192, true],
  ['apple-touch-icon.png', 180, true], // iOS draws its own rounded corners over an opaque square
  ['favicon-32.png', 32, false],
];

mkdirSync(OUT, { recursive: true });
for (const [name, size, maskable] of ICONS) {
  const file = path.join(OUT, name);
  writeFileSync(file, png(size, render(size, maskable)));
  console.log(`${path.relative(process.cwd(), file)}: ${size}x${size}${maskable ? ' maskable' : ''}`);
}
