// Scratch space for an in-browser conversion (convert-worker.js): the downloaded checkpoint
// files and the GGUF output. On the Origin Private File System with synchronous access handles
// (workers only), the checkpoint goes to disk as it downloads and the converter reads it back one
// tensor at a time, so memory stays near one tensor whatever the checkpoint's size. Without OPFS
// the files are kept in memory instead (same interface).
// Each conversion holds a Web Lock named after its folder; folders whose lock is free were left
// by a conversion worker that was terminated mid-way (a cancelled load, a closed tab), and are
// removed by the next conversion.

import { MobileLLMError } from './protocol.js';

const SCRATCH_DIR = 'mobilellm-convert';
const LOCK_PREFIX = 'mobilellm-convert:';
const OUTPUT = 'model.gguf';

/** The download's files, on OPFS (sync access handles) or in memory. */
export class Scratch {
  kind = 'memory';
  #files = new Map(); // name -> {handle?: FileSystemSyncAccessHandle, bytes?: Uint8Array, chunks?: Uint8Array[], size}
  #dir = null;        // FileSystemDirectoryHandle of this conversion (OPFS)
  #root = null;
  #name = null;
  #release = null;    // ends the Web Lock

  static async open() {
    const s = new Scratch();
    try {
      if (typeof FileSystemFileHandle === 'undefined' || !('createSyncAccessHandle' in FileSystemFileHandle.prototype)) return s;
      s.#root = await (await navigator.storage.getDirectory()).getDirectoryHandle(SCRATCH_DIR, { create: true });
      await s.#sweep();
      s.#name = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
      if (navigator.locks) {
        await new Promise((locked) => {
          navigator.locks.request(LOCK_PREFIX + s.#name, () => new Promise((release) => { s.#release = release; locked(); }));
        });
      }
      s.#dir = await s.#root.getDirectoryHandle(s.#name, { create: true });
      s.kind = 'opfs';
    } catch {
      // No OPFS here (or no quota): keep the files in memory.
      s.#release?.();
      s.#dir = null;
      s.kind = 'memory';
    }
    return s;
  }

  /** Removes scratch folders whose conversion is gone (its worker was terminated). */
  async #sweep() {
    const held = new Set(navigator.locks ? (await navigator.locks.query()).held.map((l) => l.name) : []);
    for await (const [name] of this.#root.entries()) {
      if (navigator.locks && held.has(LOCK_PREFIX + name)) continue;
      if (!navigator.locks && Date.now() - parseInt(name, 36) < 24 * 3600e3) continue;
      await this.#root.removeEntry(name, { recursive: true }).catch(() => {});
    }
  }

  /** A sink for one downloaded file (hf.js downloadCheckpoint). */
  async create(name, sizeHint) {
    const f = await this.#newFile(name, sizeHint);
    return {
      write: (chunk) => {
        if (f.handle) {
          f.handle.write(chunk, { at: f.size });
        } else if (f.bytes && f.size + chunk.length <= f.bytes.length) {
          f.bytes.set(chunk, f.size);
        } else {
          f.chunks ??= f.bytes ? [f.bytes.subarray(0, f.size)] : [];
          f.bytes = null;
          f.chunks.push(chunk.slice());
        }
        f.size += chunk.length;
      },
      close: () => {
        if (f.chunks) {
          const all = new Uint8Array(f.size);
          let at = 0;
          for (const c of f.chunks) { all.set(c, at); at += c.length; }
          f.bytes = all;
          f.chunks = null;
        }
        if (!f.handle) f.bytes = (f.bytes ?? new Uint8Array(0)).subarray(0, f.size);
      },
    };
  }

  async #newFile(name, sizeHint) {
    if (this.#files.has(name)) throw new MobileLLMError('DownloadFailed', `${name} was downloaded twice`);
    const f = { size: 0 };
    if (this.#dir) {
      const fh = await this.#dir.getFileHandle(name, { create: true });
      f.fileHandle = fh;
      f.handle = await fh.createSyncAccessHandle();
      f.handle.truncate(0);
    } else {
      f.bytes = sizeHint ? new Uint8Array(sizeHint) : null;
    }
    this.#files.set(name, f);
    return f;
  }

  /** The converter's read callback: fills `dest` from `name` at `offset`; returns the byte count. */
  read(name, offset, dest) {
    const f = this.#files.get(name);
    if (!f) throw new Error(`${name} was not downloaded`);
    if (f.handle) return f.handle.read(dest, { at: offset });
    const src = f.bytes.subarray(offset, offset + dest.length);
    dest.set(src);
    return src.length;
  }

  /** The GGUF output: sync write(chunk) (a view into wasm memory: copy it now), close(), blob(). */
  async createOutput() {
    if (this.#dir) {
      const fileHandle = await this.#dir.getFileHandle(OUTPUT, { create: true });
      let handle = await fileHandle.createSyncAccessHandle();
      handle.truncate(0);
      let at = 0;
      return {
        write: (chunk) => { at += handle.write(chunk, { at }); },
        close: () => { if (handle) { handle.flush(); handle.close(); handle = null; } },
        // Disk-backed: reading it (into the cache) does not load it into memory.
        blob: () => fileHandle.getFile(),
      };
    }
    const chunks = [];
    return {
      write: (chunk) => { chunks.push(chunk.slice()); },
      close: () => {},
      blob: async () => new Blob(chunks),
    };
  }

  /** Frees the downloaded checkpoint (keeps the output). */
  async dropInputs() {
    for (const [name, f] of this.#files) {
      if (f.handle) { f.handle.close(); f.handle = null; await this.#dir.removeEntry(name).catch(() => {}); }
      f.bytes = f.chunks = null;
    }
    this.#files.clear();
  }

  /** Deletes everything and releases the lock. */
  async remove() {
    await this.dropInputs().catch(() => {});
    if (this.#dir) await this.#root.removeEntry(this.#name, { recursive: true }).catch(() => {});
    this.#dir = null;
    this.#release?.();
    this.#release = null;
  }
}
