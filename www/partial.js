// Where a download keeps its bytes between attempts (the targets of download.js):
//   - PartialFile: a file on the Origin Private File System, written through a synchronous access
//     handle (workers only), with a small JSON sidecar describing the file it is a prefix of (size,
//     ETag, Last-Modified). It survives a cut connection, a cancelled load, a closed tab and a
//     terminated worker: the next attempt continues from its length.
//   - MemoryPartial: the same in memory, for browsers without OPFS (a retry within one load still
//     continues; a later load starts over).
// Folders of partial files are named by a hash of what they download and guarded by a Web Lock
// while in use (two tabs never write the same file); sweepFolders() removes the ones left unused
// for a week.

const META_SUFFIX = '.part.json';
const FLUSH_EVERY = 8 << 20;
export const STALE_MS = 7 * 24 * 3600e3;

/** @typedef {import('./download.js').DownloadMeta} DownloadMeta */
/**
 * OPFS's synchronous access handle (workers only: TypeScript's DOM lib, which the page is checked
 * with, does not have it).
 * @typedef {{read(buffer: ArrayBufferView, options?: {at?: number}): number,
 *   write(buffer: ArrayBufferView, options?: {at?: number}): number, truncate(size: number): void,
 *   getSize(): number, flush(): void, close(): void}} SyncHandle
 */

/** Whether partial downloads can be kept on disk here (OPFS with sync access handles: a worker). */
export function hasOpfs() {
  return typeof FileSystemFileHandle !== 'undefined' && 'createSyncAccessHandle' in FileSystemFileHandle.prototype &&
    typeof navigator !== 'undefined' && !!navigator.storage?.getDirectory;
}

/**
 * A short stable folder name for `text` (64-bit FNV-1a; the sidecar records `text` itself).
 * @param {string} text
 */
export function folderName(text) {
  let a = 0x811c9dc5, b = 0xcbf29ce4;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c ^ (a >>> 7), 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}
const FOLDER_RE = /^[0-9a-f]{16}$/;

/**
 * OPFS folder `root/name` (created when `create`), or null when absent or no OPFS.
 * @param {string} root
 * @param {string | null} [name]  none: `root` itself
 * @returns {Promise<FileSystemDirectoryHandle | null>}
 */
export async function opfsFolder(root, name, create = false) {
  try {
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle(root, { create });
    return name ? await top.getDirectoryHandle(name, { create }) : top;
  } catch {
    return null;
  }
}

/**
 * Removes `root/name` and everything in it; false when it was not there or stays in use. A
 * worker that was just terminated may hold its files open a moment longer: retried for 2 s.
 * @param {string} root
 * @param {string} name
 */
export async function removeFolder(root, name) {
  const top = typeof navigator !== 'undefined' && typeof navigator.storage?.getDirectory === 'function' ? await opfsFolder(root) : null;
  if (!top) return false;
  for (let i = 0; ; i++) {
    try {
      await top.removeEntry(name, { recursive: true });
      return true;
    } catch (e) {
      if (e?.name !== 'NoModificationAllowedError' || i >= 20) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Removes the folders of `root` nobody holds (`lockPrefix` + name) that are stale: untouched for
 * STALE_MS, or not named by folderName() (left by an older version of this code).
 * @param {string} root
 * @param {string} lockPrefix
 */
export async function sweepFolders(root, lockPrefix, now = Date.now()) {
  const top = await opfsFolder(root);
  if (!top) return;
  const held = new Set(navigator.locks ? ((await navigator.locks.query()).held ?? []).map((l) => l.name) : []);
  const doomed = [];
  for await (const [name, handle] of top.entries()) {
    if (held.has(lockPrefix + name)) continue;
    if (FOLDER_RE.test(name) && handle.kind === 'directory' && now - (await lastWrite(handle)) < STALE_MS) continue;
    doomed.push(name);
  }
  for (const name of doomed) await top.removeEntry(name, { recursive: true }).catch(() => {});
}

/** @param {FileSystemDirectoryHandle} dir */
async function lastWrite(dir) {
  let t = 0;
  for await (const [, h] of dir.entries()) {
    if (h.kind === 'file') t = Math.max(t, (await h.getFile().catch(() => null))?.lastModified ?? 0);
  }
  return t;
}

/**
 * Waits for the Web Lock `name` and resolves to its release function (a no-op without Web Locks).
 * Held until released or until this worker ends.
 * @param {string} name
 * @param {AbortSignal} [signal]
 * @returns {Promise<() => void>}
 */
export function holdLock(name, signal) {
  if (typeof navigator === 'undefined' || !navigator.locks) return Promise.resolve(() => {});
  return new Promise((acquired, failed) => {
    navigator.locks.request(name, { signal }, () => /** @type {Promise<void>} */ (new Promise((release) => acquired(release)))).catch(failed);
  });
}

/**
 * A sync access handle; the handle of a just-terminated worker may take a moment to close.
 * @param {FileSystemFileHandle} fileHandle
 * @returns {Promise<SyncHandle>}
 */
async function syncHandle(fileHandle) {
  for (let i = 0; ; i++) {
    try {
      return await /** @type {FileSystemFileHandle & {createSyncAccessHandle(): Promise<SyncHandle>}} */ (fileHandle).createSyncAccessHandle();
    } catch (e) {
      if (i >= 30 || e?.name === 'QuotaExceededError') throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A downloaded file on OPFS, possibly incomplete: the target of download.js resumableDownload. */
export class PartialFile {
  size = 0;
  /** @type {DownloadMeta | null} */
  meta = null;
  /** @type {FileSystemDirectoryHandle} */
  #dir;
  /** @type {string} */
  #name;
  /** @type {FileSystemFileHandle} */
  #fileHandle;
  /** @type {SyncHandle} the data; both handles are gone after close() */
  #data;
  /** @type {SyncHandle} the sidecar */
  #side;
  /** @type {string} */
  #id;
  #unflushed = 0;

  /**
   * Opens (creating) `name` in `dir`. `id` names what it downloads (a URL): stored bytes are kept
   * only when the sidecar says they belong to the same `id`.
   * @param {FileSystemDirectoryHandle} dir
   * @param {string} name
   * @param {string} id
   */
  static async open(dir, name, id) {
    const f = new PartialFile();
    f.#dir = dir;
    f.#name = name;
    f.#id = id;
    f.#fileHandle = await dir.getFileHandle(name, { create: true });
    f.#data = await syncHandle(f.#fileHandle);
    try {
      f.#side = await syncHandle(await dir.getFileHandle(name + META_SUFFIX, { create: true }));
    } catch (e) {
      f.#data.close();
      throw e;
    }
    const saved = f.#readSide();
    if (saved?.id === id && saved.meta) {
      f.meta = saved.meta;
      f.size = f.#data.getSize();
    } else {
      f.#data.truncate(0);
    }
    return f;
  }

  #readSide() {
    try {
      const buf = new Uint8Array(this.#side.getSize());
      this.#side.read(buf, { at: 0 });
      return JSON.parse(new TextDecoder().decode(buf));
    } catch {
      return null;
    }
  }

  /**
   * Empties the file: the bytes that follow belong to the file `meta` describes.
   * @param {DownloadMeta} meta
   */
  restart(meta) {
    // Truncate before the new description is written: a worker stopped in between leaves an
    // empty file, never old bytes under a new description.
    this.#data.truncate(0);
    this.size = 0;
    this.setMeta(meta);
  }

  /** @param {DownloadMeta} meta */
  setMeta(meta) {
    this.meta = meta;
    const bytes = new TextEncoder().encode(JSON.stringify({ id: this.#id, meta }));
    this.#side.truncate(0);
    this.#side.write(bytes, { at: 0 });
    this.#side.flush();
  }

  /** @param {Uint8Array} chunk */
  write(chunk) {
    let done = 0;
    while (done < chunk.length) done += this.#data.write(chunk.subarray(done), { at: this.size + done });
    this.size += chunk.length;
    this.#unflushed += chunk.length;
    if (this.#unflushed >= FLUSH_EVERY) { this.#data.flush(); this.#unflushed = 0; }
  }

  /**
   * Fills `dest` from `offset` (the converter's reads); returns the byte count.
   * @param {number} offset
   * @param {Uint8Array} dest
   */
  read(offset, dest) {
    return this.#data.read(dest, { at: offset });
  }

  /** Whether the file holds every byte of the file it describes. */
  get complete() {
    return this.meta?.total != null && this.size === this.meta.total;
  }

  close() {
    for (const h of [this.#data, this.#side]) {
      try { h?.flush(); h?.close(); } catch { /* already closed */ }
    }
    this.#data = this.#side = /** @type {any} */ (null); // using a closed file is a bug: let it throw
  }

  /** The bytes as a disk-backed File (closes the handles: reading needs them released). */
  async file() {
    this.close();
    return this.#fileHandle.getFile();
  }

  /** Deletes the file and its sidecar. */
  async remove() {
    this.close();
    for (const n of [this.#name, this.#name + META_SUFFIX]) await this.#dir.removeEntry(n).catch(() => {});
  }
}

/** The same target in memory. Pre-sized when the file's size is known (no second copy). */
export class MemoryPartial {
  size = 0;
  /** @type {DownloadMeta | null} */
  meta = null;
  /** @type {Uint8Array<ArrayBuffer> | null} */
  #buf = null;
  /** @type {Uint8Array<ArrayBuffer>[]} */
  #chunks = [];

  /** @param {DownloadMeta | null} meta */
  restart(meta) {
    this.meta = meta;
    this.size = 0;
    this.#chunks = [];
    this.#buf = meta?.total != null && meta.total > 0 ? new Uint8Array(meta.total) : null;
  }

  /** @param {DownloadMeta} meta */
  setMeta(meta) { this.meta = meta; }

  /** @param {Uint8Array} chunk */
  write(chunk) {
    if (this.#buf && this.size + chunk.length <= this.#buf.length) this.#buf.set(chunk, this.size);
    else {
      if (this.#buf) { this.#chunks = [this.#buf.subarray(0, this.size)]; this.#buf = null; }
      this.#chunks.push(chunk.slice());
    }
    this.size += chunk.length;
  }

  /** All the bytes in one array (joins the chunks once). */
  bytes() {
    if (!this.#buf || this.#chunks.length) {
      const all = new Uint8Array(this.size);
      let at = 0;
      for (const c of this.#chunks) { all.set(c, at); at += c.length; }
      this.#buf = all;
      this.#chunks = [];
    }
    return this.#buf.subarray(0, this.size);
  }

  /**
   * @param {number} offset
   * @param {Uint8Array} dest
   */
  read(offset, dest) {
    const src = this.bytes().subarray(offset, offset + dest.length);
    dest.set(src);
    return src.length;
  }

  get complete() { return this.meta?.total != null && this.size === this.meta.total; }
  close() {}
  async file() { return new Blob([this.bytes()]); }
  async remove() { this.restart(null); }
}
