/**
 * The sender's first step (protocol.md 9.1): each PATH read once. A file gives one item; a
 * folder every regular file under it (relative paths with `/`, sorted by their UTF-8 bytes;
 * symbolic links and other special files are left out, never followed). Each item is hashed
 * (SHA-256) and cut in chunks whose CRC-32s are kept (4 bytes each, big-endian), so the
 * receiver can check every chunk by itself. The offer's `sha256` is the file's, or for a
 * folder its manifest's (FileWire.manifestHash).
 */
import { createHash, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { crc32 } from "node:zlib"
import * as Effect from "effect/Effect"
import { byPathBytes, CHUNK_BYTES, chunkCount, type ManifestItem, manifestHash } from "../domain/FileWire.ts"
import type { FileOffer } from "../domain/Transfer.ts"
import { O_NOFOLLOW } from "../services/Files.ts"
import type { NewItem } from "../services/TransferStore.ts"
import { FileError, fileError } from "./Session.ts"

/** Files one folder may hold (a bound on memory and on the manifest). */
export const MAX_FOLDER_FILES = 100_000

/** Chunks read at once while hashing (about 1 MB, on the chunk grid). */
const READ_CHUNKS = 16

export interface Prepared {
  readonly offer: FileOffer
  readonly items: ReadonlyArray<NewItem>
}

const errnoText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** Every regular file under `root`, relative paths with `/`, without following a link. */
const walk = async (root: string): Promise<Array<{ readonly rel: string; readonly abs: string }>> => {
  const out: Array<{ rel: string; abs: string }> = []
  const dirs: Array<string> = [""]
  while (dirs.length > 0) {
    const rel = dirs.pop()!
    const entries = await fs.promises.readdir(rel === "" ? root : path.join(root, rel), { withFileTypes: true })
    for (const e of entries) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`
      if (e.isDirectory()) dirs.push(r)
      else if (e.isFile()) out.push({ rel: r, abs: path.join(root, r) })
      if (out.length > MAX_FOLDER_FILES) throw fileError("Io", `${root} holds more than ${MAX_FOLDER_FILES} files`)
    }
  }
  return out.sort((a, b) => byPathBytes(a.rel, b.rel))
}

/** Reads a file once: its size and mtime (as opened), SHA-256 and per-chunk CRC-32s. */
export const hashFile = async (abs: string, noFollow: boolean) => {
  const fh = await fs.promises.open(abs, fs.constants.O_RDONLY | (noFollow ? O_NOFOLLOW : 0))
  try {
    const stat = await fh.stat()
    if (!stat.isFile()) throw fileError("Io", `${abs} is not a regular file`)
    const size = stat.size
    const sums = new Uint8Array(chunkCount(size) * 4)
    const view = new DataView(sums.buffer)
    const hash = createHash("sha256")
    // two buffers: the next block is read while the last one is hashed
    const bufs = [Buffer.allocUnsafe(CHUNK_BYTES * READ_CHUNKS), Buffer.allocUnsafe(CHUNK_BYTES * READ_CHUNKS)] as const
    const readAt = (pos: number, buf: Buffer) => {
      const want = Math.min(buf.length, size - pos)
      const read = fh.read(buf, 0, want, pos).then(({ bytesRead }) => {
        if (bytesRead !== want) throw fileError("Changed", `${abs} changed while it was read (it is shorter now)`)
        return buf.subarray(0, want)
      })
      read.catch(() => {}) // awaited below, unless an earlier block failed
      return read
    }
    let ahead = size > 0 ? readAt(0, bufs[0]) : undefined
    for (let pos = 0, turn = 1; ahead !== undefined; turn++) {
      const block = await ahead
      ahead = pos + block.length < size ? readAt(pos + block.length, bufs[turn % 2]!) : undefined
      for (let at = 0; at < block.length; at += CHUNK_BYTES) {
        const chunk = block.subarray(at, Math.min(block.length, at + CHUNK_BYTES))
        view.setUint32(((pos + at) / CHUNK_BYTES) * 4, crc32(chunk) >>> 0)
        hash.update(chunk)
      }
      pos += block.length
    }
    return { size, mtimeMs: stat.mtimeMs, sha256: hash.digest("hex"), sums }
  } finally {
    await fh.close()
  }
}

const prepareOne = async (given: string): Promise<Prepared> => {
  const abs = path.resolve(given)
  const stat = await fs.promises.stat(abs)
  const name = path.basename(abs) || "file"
  const id = randomUUID()
  if (stat.isFile()) {
    const h = await hashFile(abs, false)
    return {
      offer: { id, name, size: h.size, count: 1, sha256: h.sha256 },
      items: [{ idx: 0, path: name, size: h.size, sha256: h.sha256, sums: h.sums, source: abs, mtime_ms: h.mtimeMs }]
    }
  }
  if (!stat.isDirectory()) throw fileError("Io", `${given} is not a file or a folder`)
  const files = await walk(abs)
  if (files.length === 0) throw fileError("Io", `${given} holds no files`)
  const items: Array<NewItem> = []
  for (const f of files) {
    const h = await hashFile(f.abs, true)
    items.push({ idx: items.length, path: f.rel, size: h.size, sha256: h.sha256, sums: h.sums, source: f.abs, mtime_ms: h.mtimeMs })
  }
  const manifest: Array<ManifestItem> = items.map((i) => ({ path: i.path, size: i.size, sha256: i.sha256 }))
  return {
    offer: { id, name, size: items.reduce((n, i) => n + i.size, 0), count: items.length, sha256: manifestHash(manifest) },
    items
  }
}

/** Reads and hashes one PATH (a file or a folder) into an offer and its items. */
export const prepare = (given: string): Effect.Effect<Prepared, FileError> =>
  Effect.tryPromise({
    try: () => prepareOne(given),
    catch: (e) => e instanceof FileError ? e : fileError("Io", `cannot read ${given}: ${errnoText(e)}`, e)
  })
