import * as assert from 'uvu/assert';
import { inflateSync } from 'node:zlib';

// --- A small PNG decoder: signature, IHDR, IDAT inflated and unfiltered (8-bit RGB/RGBA). ---

export interface Image {
  width: number;
  height: number;
  /** [r, g, b] of (x, y), composited on white. */
  rgb(x: number, y: number): [number, number, number];
}

export function decodePng(png: Buffer): Image {
  assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.is(png.toString('latin1', 12, 16), 'IHDR', 'IHDR comes first');
  const width = png.readUInt32BE(16);
  const height = png.readUInt32BE(20);
  const [depth, colorType, , , interlace] = png.subarray(24, 29);
  assert.is(depth, 8, 'bit depth');
  assert.is(interlace, 0, 'interlace');
  const channels = ({ 2: 3, 6: 4 } as Record<number, number>)[colorType];
  assert.ok(channels, `colour type ${colorType} is not RGB(A)`);
  const idat: Buffer[] = [];
  let sawEnd = false;
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    if (type === 'IDAT') idat.push(png.subarray(at + 8, at + 8 + len));
    if (type === 'IEND') sawEnd = true;
    at += 12 + len;
  }
  assert.ok(sawEnd, 'IEND');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.is(raw.length, height * (stride + 1), 'image data length');
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const cur = raw[y * (stride + 1) + 1 + x];
      const a = x >= channels ? px[y * stride + x - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? px[(y - 1) * stride + x - channels] : 0;
      let pred: number;
      if (filter === 0) pred = 0;
      else if (filter === 1) pred = a;
      else if (filter === 2) pred = b;
      else if (filter === 3) pred = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`bad filter ${filter}`);
      px[y * stride + x] = (cur + pred) & 0xff;
    }
  }
  return {
    width,
    height,
    rgb(x, y) {
      const i = y * stride + x * channels;
      const alpha = channels === 4 ? px[i + 3] / 255 : 1;
      const on = (v: number) => Math.round(v * alpha + 255 * (1 - alpha));
      return [on(px[i]), on(px[i + 1]), on(px[i + 2])];
    },
  };
}

