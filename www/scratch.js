// Scratch space for an in-browser conversion (convert-worker.js): the downloaded checkpoint
// files and the GGUF output. On the Origin Private File System with synchronous access handles
// (workers only), the checkpoint goes to disk as it downloads and the converter reads it back one
// tensor at a time, so memory stays near one tensor whatever the checkpoint's size. Without OPFS
// the files are kept in memory instead (same interface).
//
// The folder is named after the checkpoint (partial.js folderName of its base URL), not after
// one attempt: files a failed or cancelled conversion downloaded stay there with their sidecars
// (partial.js PartialFile), and the next conversion of the same checkpoint continues them
// (hf.js). It is deleted once the GGUF is made, by a failure that is not a broken download (an
// unsupported model, a missing file), by deleteCached of the converted model, or after a week
// unused (sweepFolders). A Web Lock per folder keeps two conversions of one checkpoint (two tabs)
// from writing the same files: the second waits.

import { PartialFile, MemoryPartial, hasOpfs, folderName, opfsFolder, removeFolder, sweepFolders, holdLock } from './partial.js';
import { CONVERT_DIR } from './cache.js';

/** @typedef {import('./partial.js').MemoryPartial | import('./partial.js').PartialFile} ScratchFile */

const LOCK_PREFIX = 'mobilellm-convert:';
const OUTPUT = 'model.gguf';

/** The download's files, on OPFS (sync access handles) or in memory. */
export class Scratch {
  /** @type {'memory' | 'opfs'} */
  kind = 'memory';
  /** @type {Map<string, ScratchFile>} */
  #files = new Map(); // name -> PartialFile | MemoryPartial
  /** @type {FileSystemDirectoryHandle | null} */
  #dir = null;        // FileSystemDirectoryHandle of this checkpoint (OPFS)
  /** @type {string | null} */
  #name = null;
  /** @type {(() => void) | null} */
  #release = null;    // ends the Web Lock

  /**
   * The scratch folder of the checkpoint at `base` (hf.js source.base), locked for this worker.
   * @param {string} base
   */
  static async open(base) {
    const s = new Scratch();
    if (!hasOpfs()) return s;
    try {
      await sweepFolders(CONVERT_DIR, LOCK_PREFIX);
      s.#name = folderName(base);
      s.#release = await holdLock(LOCK_PREFIX + s.#name);
      s.#dir = await opfsFolder(CONVERT_DIR, s.#name, true);
      if (s.#dir) s.kind = 'opfs';
    } catch {
      s.#dir = null;
    }
    if (!s.#dir) { s.#release?.(); s.#release = null; } // no OPFS here (or no quota): memory
    return s;
  }

  /**
   * The download target for `name` (hf.js), holding what an earlier attempt stored of `url`.
   * @param {string} name
   * @param {string} url
   * @returns {Promise<ScratchFile>}
   */
  async partial(name, url) {
    const have = this.#files.get(name);
    if (have) return have;
    const f = this.#dir ? await PartialFile.open(this.#dir, name, url) : new MemoryPartial();
    this.#files.set(name, f);
    return f;
  }

  /**
   * Drops a file that does not exist on the server.
   * @param {string} name
   */
  async forget(name) {
    await this.#files.get(name)?.remove();
    this.#files.delete(name);
  }

  /**
   * The converter's read callback: fills `dest` from `name` at `offset`; returns the byte count.
   * @param {string} name
   * @param {number} offset
   * @param {Uint8Array} dest
   */
  read(name, offset, dest) {
    const f = this.#files.get(name);
    if (!f) throw new Error(`${name} was not downloaded`);
    return f.read(offset, dest);
  }

  /**
   * The GGUF output: sync write(chunk) (a view into wasm memory: copy it now), close(), blob().
   * @returns {Promise<{write(chunk: Uint8Array): void, close(): void, blob(): Promise<Blob>}>}
   */
  async createOutput() {
    if (this.#dir) {
      const fileHandle = await this.#dir.getFileHandle(OUTPUT, { create: true });
      /** @type {FileSystemSyncAccessHandle | null} */
      let handle = await fileHandle.createSyncAccessHandle();
      handle.truncate(0);
      let at = 0;
      return {
        // (writing after close() is a bug: let it throw)
        write: (chunk) => { at += /** @type {FileSystemSyncAccessHandle} */ (handle).write(chunk, { at }); },
        close: () => { if (handle) { handle.flush(); handle.close(); handle = null; } },
        // Disk-backed: reading it (into the cache) does not load it into memory.
        blob: () => fileHandle.getFile(),
      };
    }
    /** @type {Uint8Array<ArrayBuffer>[]} */
    const chunks = [];
    return {
      write: (chunk) => { chunks.push(chunk.slice()); },
      close: () => {},
      blob: async () => new Blob(chunks),
    };
  }

  /** Frees the downloaded checkpoint (keeps the output). */
  async dropInputs() {
    for (const f of this.#files.values()) await f.remove();
    this.#files.clear();
  }

  /** Keeps the files for the next attempt and lets another conversion have them. */
  release() {
    for (const f of this.#files.values()) f.close();
    this.#files.clear();
    this.#release?.();
    this.#release = null;
  }

  /** Deletes everything and releases the lock. */
  async remove() {
    await this.dropInputs().catch(() => {});
    if (this.#dir) await removeFolder(CONVERT_DIR, /** @type {string} */ (this.#name)); // set with #dir
    this.#dir = null;
    this.#release?.();
    this.#release = null;
  }
}
