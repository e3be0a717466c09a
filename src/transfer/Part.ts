/**
 * The receiver's files on disk (protocol.md 9.4): a `.part` file per item, created beside
 * where the item will land (never over an existing file: O_EXCL, no link followed), written
 * at chunk offsets (consecutive chunks gathered into writes of about 1 MiB, a few in
 * flight), checked chunk by chunk against the sender's CRC-32s when a transfer resumes, and finally fsynced and linked into place under a name
 * that is free (`name (1).ext`), the directory fsynced after.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { crc32 } from "node:zlib"
import * as Effect from "effect/Effect"
import { CHUNK_BYTES, chunkLength } from "../domain/FileWire.ts"
import { freeName, withSuffix } from "../domain/FileName.ts"
import { fsyncDir, O_NOFOLLOW } from "../services/Files.ts"
import { type FileError, fileError } from "./Session.ts"

/** Bytes gathered before one write (consecutive chunks go out together, in one writev). */
const WRITE_BYTES = 1 << 20
/** Writes in flight at once on one .part. */
const WRITES_IN_FLIGHT = 4
/**
 * Bytes written between two fdatasyncs started in the background while a file streams in,
 * so that the disk writes as the bytes come and the fsync at the end has little left to do.
 */
const SYNC_EVERY_BYTES = 32 << 20

const codeOf = (e: unknown): string => (typeof e === "object" && e !== null && "code" in e ? String(e.code) : "")

/** A local file-system failure: a full disk pauses the transfer, anything else fails it. */
export const diskError = (what: string) => (e: unknown): FileError =>
  codeOf(e) === "ENOSPC" || codeOf(e) === "EDQUOT"
    ? fileError("DiskFull", `the disk is full (${what}): the transfer waits for room`, e)
    : fileError("Io", `${what}: ${e instanceof Error ? e.message : String(e)}`, e)

const io = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, FileError> => Effect.tryPromise({ try: f, catch: diskError(what) })

/** Whether chunk `i` of `bytes` matches its CRC in `sums`. */
export const chunkOk = (sums: Uint8Array, i: number, bytes: Uint8Array): boolean =>
  new DataView(sums.buffer, sums.byteOffset, sums.byteLength).getUint32(i * 4) === (crc32(bytes) >>> 0)

/** Creates a new empty `<name>.part` in `dir` (a free name), without following links; its path. */
export const createPart = (dir: string, name: string): Effect.Effect<string, FileError> =>
  io(`cannot create a .part file in ${dir}`, async () => {
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 })
    let created: string | undefined
    const free = freeName(withSuffix(name, ".part"), (candidate) => {
      try {
        fs.closeSync(fs.openSync(path.join(dir, candidate), fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY | O_NOFOLLOW, 0o600))
        created = candidate
        return false
      } catch (e) {
        if (codeOf(e) === "EEXIST") return true
        throw e
      }
    })
    if (free === undefined || created === undefined) throw new Error(`no free name for ${name}.part`)
    return path.join(dir, created)
  })

/** Creates a new folder `name` in `dir`, or the first free `name (n)`; its path. */
export const createFolder = (dir: string, name: string): Effect.Effect<string, FileError> =>
  io(`cannot create a folder in ${dir}`, async () => {
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 })
    const free = freeName(name, (candidate) => {
      try {
        fs.mkdirSync(path.join(dir, candidate), { mode: 0o700 })
        return false
      } catch (e) {
        if (codeOf(e) === "EEXIST") return true
        throw e
      }
    })
    if (free === undefined) throw new Error(`no free name for ${name}`)
    fsyncDir(dir)
    return path.join(dir, free)
  })

/** Opens a .part for reading and writing (created again, empty, if it went missing). */
export const openPart = (part: string) =>
  io(`cannot open ${part}`, () => fs.promises.open(part, fs.constants.O_RDWR | fs.constants.O_CREAT | O_NOFOLLOW, 0o600))

/**
 * Writes at offsets: consecutive pieces are gathered into writes of about WRITE_BYTES (one
 * writev each), with up to WRITES_IN_FLIGHT of them under way, and an fdatasync started
 * every SYNC_EVERY_BYTES; `drain` writes what is gathered and waits for all of them. The
 * pieces are kept (not copied) until written: the caller does not change them.
 */
export const makeWriter = (fh: fs.promises.FileHandle, part: string) => {
  const inflight = new Set<Promise<void>>()
  let failed: unknown
  let gathered: Array<Uint8Array> = []
  let gatheredAt = 0
  let gatheredBytes = 0
  let unsynced = 0
  let syncing: Promise<void> | undefined
  const noteFailure = (e: unknown) => {
    failed ??= e
  }
  /** Counts bytes written; past SYNC_EVERY_BYTES, starts an fdatasync (one at a time). */
  const written = (n: number) => {
    unsynced += n
    if (unsynced < SYNC_EVERY_BYTES || syncing !== undefined) return
    unsynced = 0
    syncing = fh.datasync().catch(noteFailure).finally(() => {
      syncing = undefined
    })
  }

  const flush = async () => {
    if (gathered.length === 0) return
    while (inflight.size >= WRITES_IN_FLIGHT) await Promise.race(inflight)
    if (failed !== undefined) throw failed
    const pieces = gathered
    const at = gatheredAt
    const n = gatheredBytes
    gathered = []
    gatheredBytes = 0
    const p: Promise<void> = fh.writev(pieces, at)
      .then((r) => {
        if (r.bytesWritten !== n) throw new Error(`short write (${r.bytesWritten} of ${n} bytes)`)
        written(n)
      })
      .catch(noteFailure)
      .finally(() => void inflight.delete(p))
    inflight.add(p)
  }

  const flushing = io(`cannot write ${part}`, flush)
  /** Gathers `bytes` (written at `offset`); waits only when a write has to start. */
  const write = (bytes: Uint8Array, offset: number): Effect.Effect<void, FileError> =>
    Effect.suspend(() => {
      if (failed !== undefined) return Effect.fail(diskError(`cannot write ${part}`)(failed))
      if (gathered.length > 0 && offset !== gatheredAt + gatheredBytes) return Effect.andThen(flushing, write(bytes, offset))
      if (gathered.length === 0) gatheredAt = offset
      gathered.push(bytes)
      gatheredBytes += bytes.length
      return gatheredBytes >= WRITE_BYTES ? flushing : Effect.void
    })
  const drain = io(`cannot write ${part}`, async () => {
    await flush()
    await Promise.all(inflight)
    await syncing
    if (failed !== undefined) throw failed
  })
  return { write, drain }
}

/** Reads chunk `i` of an item of `size` bytes from an open .part. */
export const readChunk = (fh: fs.promises.FileHandle, part: string, size: number, i: number) =>
  io(`cannot read ${part}`, async () => {
    const n = chunkLength(size, i)
    const buf = Buffer.allocUnsafe(n)
    const { bytesRead } = await fh.read(buf, 0, n, i * CHUNK_BYTES)
    return bytesRead === n ? buf : buf.subarray(0, bytesRead)
  })

/**
 * Moves a verified .part to `dir/name`, or the first free `name (n).ext`: a hard link never
 * replaces a file (where links are not allowed, a check and rename), then the .part goes
 * and the directory is fsynced. The final path.
 */
export const place = (part: string, dir: string, name: string) =>
  io(`cannot move ${part} into place`, async () => {
    let linked: string | undefined
    const free = freeName(name, (candidate) => {
      const target = path.join(dir, candidate)
      try {
        fs.linkSync(part, target)
        linked = target
        return false
      } catch (e) {
        if (codeOf(e) === "EEXIST") return true
        if (codeOf(e) !== "EPERM" && codeOf(e) !== "ENOTSUP" && codeOf(e) !== "EXDEV") throw e
        if (fs.existsSync(target)) return true
        fs.renameSync(part, target)
        linked = target
        return false
      }
    })
    if (free === undefined || linked === undefined) throw new Error(`no free name for ${name} in ${dir}`)
    await fs.promises.rm(part, { force: true })
    fsyncDir(dir)
    return linked
  })
