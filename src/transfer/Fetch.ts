/**
 * The receiver's side of a file session (protocol.md 9.4): dials the sender's chat port,
 * proves who it is in a `p2pchat-file/1` handshake (the sender must prove the name that
 * made the offer, with its pinned key), fetches the manifest and the sums once (stored),
 * then each file not yet in place: what its .part holds is checked chunk by chunk first
 * (a bad chunk is fetched again by itself), the rest is streamed from the end of the last
 * good chunk, every chunk is checked as it comes, and the whole file's SHA-256 is compared
 * before it is moved into place. At the end it tells the sender `done`.
 */
import { createHash, type Hash } from "node:crypto"
import * as path from "node:path"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import { safeName, safeParts } from "../domain/FileName.ts"
import {
  CHUNK_BYTES,
  chunkCount,
  chunkLength,
  decodeReply,
  type ManifestItem,
  manifestHash,
  type Reply,
  type Request
} from "../domain/FileWire.ts"
import { transportCause, type SessionError } from "../dialects/noise/channel.ts"
import * as Noise from "../dialects/noise/index.ts"
import type { NodeConfig } from "../services/Config.ts"
import { Crypto, keyId } from "../services/Crypto.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import type { ItemRow, TransferRow, TransferStore } from "../services/TransferStore.ts"
import type { Transport } from "../transport/Transport.ts"
import { Trust } from "../trust/Trust.ts"
import { chunkOk, createFolder, createPart, makeWriter, openPart, place, readChunk } from "./Part.ts"
import { type FileError, fileError, type FileSession, makeSession } from "./Session.ts"

/** Tries of one chunk that keeps failing its CRC before the transfer fails. */
export const CHUNK_TRIES = 3
const CONNECT_TIMEOUT_MS = 5000
/** Bytes between two progress reports of a file coming in. */
const SHOW_EVERY_BYTES = 1 << 20
/** What the puller's socket reads ahead: many data messages per read, not one. */
const READ_AHEAD_BYTES = 1 << 20

export interface FetchDeps {
  readonly config: NodeConfig
  readonly store: TransferStore
  readonly registry: PeerRegistry["Service"]
  readonly trust: Trust["Service"]
  readonly crypto: Crypto["Service"]
  readonly transport: Transport["Service"]
  /** Bytes received and verified so far (all files); the engine throttles what it shows. */
  readonly progress: (row: TransferRow, bytes: number) => Effect.Effect<void>
}

const storage = (e: { readonly message: string }) => fileError("Storage", e.message, e)

const handshakeError = (e: SessionError | { readonly _tag: "HistoryError"; readonly message: string }): FileError =>
  e._tag === "HistoryError"
    ? storage(e)
    : transportCause(e) !== undefined || e.reason === "Closed" || e.reason === "Timeout"
    ? fileError("Network", e.message, e)
    : fileError("Refused", e.message, e)

/** The next control reply; an error reply is the FileError it says. */
const reply = (session: FileSession): Effect.Effect<Reply, FileError> =>
  Effect.gen(function*() {
    const m = yield* session.receive
    if (m._tag !== "Control") return yield* fileError("Protocol", `file session: expected a control reply, got ${m._tag.toLowerCase()}`)
    const r = decodeReply(m.json)
    if (r._tag === "Failure") return yield* fileError("Protocol", `file session: ${r.failure}`)
    const c = r.success
    if (c.type !== "error") return c
    const why = `the sender says: ${c.message.slice(0, 200)}`
    return yield* fileError(c.code === "changed" || c.code === "gone" ? "Changed" : c.code === "io" ? "Network" : "Refused", why)
  })

/** Dials the sender of `row` and opens a file session with it (for the rest of the scope). */
export const connect = (deps: FetchDeps, row: TransferRow): Effect.Effect<FileSession, FileError, Scope.Scope> =>
  Effect.gen(function*() {
    const ownName = deps.config.name
    if (ownName === undefined) return yield* fileError("Refused", "this node has no name to prove (start it with --name)")
    const found = yield* deps.registry.lookup(row.peer_name)
    if (Option.isNone(found) || found.value.proto !== "p2pchat/1") {
      return yield* fileError("Network", `${row.peer_name} is not online`)
    }
    const peer = found.value
    const pinned = yield* deps.trust.pinned(row.peer_name).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
    const ch = yield* deps.transport.dial(peer.address, peer.port, CONNECT_TIMEOUT_MS, { readAheadBytes: READ_AHEAD_BYTES }).pipe(
      Effect.mapError((e) => fileError("Network", `cannot reach ${row.peer_name}: ${e.message}`, e))
    )
    const keys = yield* Noise.initiateFile(ch, ownName, {
      expectedUsername: row.peer_name,
      expectedKeyId: Option.isSome(pinned) ? keyId(pinned.value) : peer.id
    }).pipe(Effect.provideService(Crypto, deps.crypto), Effect.provideService(Trust, deps.trust), Effect.mapError(handshakeError))
    const raw = yield* ch.raw.pipe(Effect.mapError((e) => fileError("Protocol", e.message, e)))
    const session = makeSession(raw, keys.transport, deps.config.idleTimeoutMs)
    const first = yield* reply(session)
    if (first.type !== "ready") return yield* fileError("Protocol", `file session: expected ready, got ${first.type}`)
    return session
  })

/** Whether a transfer is a folder (its sha256 is its manifest's) rather than one file. */
export const isFolder = (row: Pick<TransferRow, "sha256">, items: ReadonlyArray<Pick<ItemRow, "sha256">>): boolean =>
  !(items.length === 1 && items[0]!.sha256 === row.sha256)

/** The manifest, every page, checked against the offer. */
const fetchManifest = (session: FileSession, row: TransferRow) =>
  Effect.gen(function*() {
    const items: Array<ManifestItem> = []
    for (let from = 0, pages = 0;; pages++) {
      if (pages > row.count) return yield* fileError("Protocol", "file session: more manifest pages than files")
      yield* session.control({ type: "manifest", offer: row.id, from })
      const page = yield* reply(session)
      if (page.type !== "manifest") return yield* fileError("Protocol", `file session: expected a manifest, got ${page.type}`)
      items.push(...page.items)
      if (items.length > row.count) break
      if (page.next === null) break
      if (page.next !== items.length) return yield* fileError("Protocol", "file session: manifest pages out of order")
      from = page.next
    }
    const total = items.reduce((n, i) => n + i.size, 0)
    const matches = items.length === row.count && total === row.size &&
      (manifestHash(items) === row.sha256 || (items.length === 1 && items[0]!.sha256 === row.sha256))
    if (!matches) return yield* fileError("Changed", "the files offered do not match the offer's size, count or SHA-256")
    return items
  })

/** One item's CRC-32s, every page. */
const fetchSums = (session: FileSession, row: TransferRow, idx: number, size: number) =>
  Effect.gen(function*() {
    const n = chunkCount(size)
    const sums = new Uint8Array(n * 4)
    for (let from = 0; from < n;) {
      yield* session.control({ type: "sums", offer: row.id, item: idx, from })
      const m = yield* session.receive
      if (m._tag === "Control") return yield* Effect.andThen(reply({ ...session, receive: Effect.succeed(m) }), fileError("Protocol", "file session: expected sums"))
      if (m._tag !== "Sums" || m.item !== idx || m.first !== from || m.crcs.length === 0 || from + m.crcs.length / 4 > n) {
        return yield* fileError("Protocol", "file session: sums that are not the ones asked for")
      }
      sums.set(m.crcs, from * 4)
      from += m.crcs.length / 4
    }
    return sums
  })

/** The manifest and sums of `row`, from the store, or fetched and stored (once). */
const itemsOf = (deps: FetchDeps, session: FileSession, row: TransferRow) =>
  Effect.gen(function*() {
    const stored = yield* deps.store.items(row.seq).pipe(Effect.mapError(storage))
    if (stored.length > 0) return stored
    const manifest = yield* fetchManifest(session, row)
    const items = []
    for (const [idx, m] of manifest.entries()) items.push({ idx, ...m, sums: yield* fetchSums(session, row, idx, m.size) })
    yield* deps.store.setItems(row.seq, items).pipe(Effect.mapError(storage))
    return yield* deps.store.items(row.seq).pipe(Effect.mapError(storage))
  })

/** Asks for chunk `i` alone until its CRC matches (CHUNK_TRIES times at most). */
const refetch = (session: FileSession, row: TransferRow, item: ItemRow, i: number) =>
  Effect.gen(function*() {
    const offset = i * CHUNK_BYTES
    const length = chunkLength(item.size, i)
    for (let t = 0; t < CHUNK_TRIES; t++) {
      const get: Request = { type: "get", offer: row.id, item: item.idx, offset, length }
      yield* session.control(get)
      const m = yield* session.receive
      if (m._tag === "Control") yield* reply({ ...session, receive: Effect.succeed(m) })
      if (m._tag !== "Data" || m.offset !== offset || m.bytes.length !== length) {
        return yield* fileError("Protocol", "file session: data that is not the chunk asked for")
      }
      if (chunkOk(item.sums, i, m.bytes)) return m.bytes
    }
    return yield* fileError("Changed", `${item.path} changed at the sender (chunk ${i} never matched its check)`)
  })

/** Where an item lands: the downloads dir (a file) or its place in the folder; its safe name. */
const destination = (config: NodeConfig, row: TransferRow, item: ItemRow, folder: boolean) => {
  if (!folder) return { dir: config.downloads, name: safeName(row.name) }
  const parts = safeParts(item.path)
  return { dir: path.join(row.path!, ...parts.slice(0, -1)), name: parts[parts.length - 1]! }
}

/**
 * Checks what the .part holds, whole chunk by whole chunk (a bad one fetched again alone):
 * the hash of the good bytes and where the good bytes end. Shown once, at the end: counting
 * up from 0 while re-reading would look as if the transfer had started over.
 */
const verifyPart = (
  session: FileSession,
  row: TransferRow,
  item: ItemRow,
  fh: import("node:fs").promises.FileHandle,
  part: string,
  shown: (bytes: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    const have = (yield* Effect.promise(() => fh.stat())).size
    const writer = makeWriter(fh, part)
    let good = 0
    for (let i = 0; i < chunkCount(item.size) && good + chunkLength(item.size, i) <= have; i++) {
      let bytes: Uint8Array = yield* readChunk(fh, part, item.size, i)
      if (!chunkOk(item.sums, i, bytes)) {
        bytes = yield* refetch(session, row, item, i)
        yield* writer.write(bytes, good)
      }
      hash.update(bytes)
      good += bytes.length
    }
    yield* writer.drain
    if (good > 0) yield* shown(good)
    if (have > good) yield* Effect.promise(() => fh.truncate(good))
    return { hash, good }
  })

/** Streams [from, size) of an item into its .part, checking each chunk; bad ones are fetched again. */
const streamRest = (
  session: FileSession,
  row: TransferRow,
  item: ItemRow,
  fh: import("node:fs").promises.FileHandle,
  part: string,
  start: { readonly hash: Hash; readonly good: number },
  shown: (bytes: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const writer = makeWriter(fh, part)
    const bad: Array<number> = []
    let at = start.good
    if (at < item.size) yield* session.control({ type: "get", offer: row.id, item: item.idx, offset: at })
    while (at < item.size) {
      const m = yield* session.receive
      if (m._tag === "Control") yield* reply({ ...session, receive: Effect.succeed(m) })
      const i = at / CHUNK_BYTES
      if (m._tag !== "Data" || m.offset !== at || m.bytes.length !== chunkLength(item.size, i)) {
        return yield* fileError("Protocol", "file session: data out of order")
      }
      if (chunkOk(item.sums, i, m.bytes)) {
        if (bad.length === 0) start.hash.update(m.bytes)
        yield* writer.write(m.bytes, at)
      } else {
        bad.push(i)
      }
      at += m.bytes.length
      if (bad.length === 0) yield* shown(at)
    }
    for (const i of bad) yield* writer.write(yield* refetch(session, row, item, i), i * CHUNK_BYTES)
    yield* writer.drain
    return bad.length === 0 ? start.hash : yield* rehash(fh, part, item.size)
  })

/** The SHA-256 of a .part from its start (after chunks were fetched again out of order). */
const rehash = (fh: import("node:fs").promises.FileHandle, part: string, size: number) =>
  Effect.gen(function*() {
    const hash = createHash("sha256")
    for (let i = 0; i < chunkCount(size); i++) hash.update(yield* readChunk(fh, part, size, i))
    return hash
  })

/** Fetches one item into its .part, checks it whole and moves it into place. */
const fetchItem = (deps: FetchDeps, session: FileSession, row: TransferRow, item: ItemRow, folder: boolean, before: number) =>
  Effect.gen(function*() {
    const { dir, name } = destination(deps.config, row, item, folder)
    let part = item.part
    if (part === null) {
      part = yield* createPart(dir, name)
      yield* deps.store.setPart(row.seq, item.idx, part).pipe(Effect.mapError(storage))
    }
    const fh = yield* openPart(part)
    // told at most once per SHOW_EVERY_BYTES (and at the end): the engine throttles what it shows anyway
    let told = -SHOW_EVERY_BYTES
    const shown = (bytes: number) => {
      if (bytes - told < SHOW_EVERY_BYTES && bytes < item.size) return Effect.void
      told = bytes
      return deps.progress(row, before + bytes)
    }
    const digest = yield* Effect.gen(function*() {
      const start = yield* verifyPart(session, row, item, fh, part, shown)
      const hash = yield* streamRest(session, row, item, fh, part, start, shown)
      yield* Effect.tryPromise({ try: () => fh.sync(), catch: (e) => fileError("Io", `cannot fsync ${part}`, e) })
      return hash.digest("hex")
    }).pipe(Effect.ensuring(Effect.promise(() => fh.close().catch(() => {}))))
    if (digest !== item.sha256) {
      yield* Effect.promise(() => import("node:fs").then((fs) => fs.promises.rm(part, { force: true })))
      yield* deps.store.setPart(row.seq, item.idx, null).pipe(Effect.ignore)
      return yield* fileError("Changed", `${item.path}: its SHA-256 does not match the offer's (it changed at the sender): not kept`)
    }
    const saved = yield* place(part, dir, name)
    yield* deps.store.setSaved(row.seq, item.idx, saved).pipe(Effect.mapError(storage))
    return saved
  })

/**
 * Fetches every file of an accepted transfer not yet in place, then tells the sender
 * `done`. Gives where it landed: the file, or the folder.
 */
export const fetchTransfer = (deps: FetchDeps, row: TransferRow): Effect.Effect<string, FileError, Scope.Scope> =>
  Effect.gen(function*() {
    const session = yield* connect(deps, row)
    const items = yield* itemsOf(deps, session, row)
    const folder = isFolder(row, items)
    if (folder && row.path === null) {
      const made = yield* createFolder(deps.config.downloads, safeName(row.name))
      yield* deps.store.setPath(row.seq, made).pipe(Effect.mapError(storage))
      row = { ...row, path: made }
    }
    let done = items.filter((i) => i.saved !== null).reduce((n, i) => n + i.size, 0)
    let landed = folder ? row.path! : items[0]?.saved ?? ""
    for (const item of items) {
      if (item.saved !== null) continue
      landed = yield* fetchItem(deps, session, row, item, folder, done)
      done += item.size
      yield* deps.progress(row, done)
    }
    yield* session.control({ type: "done", offer: row.id })
    yield* reply(session).pipe(Effect.ignore)
    return folder ? row.path! : landed
  })
