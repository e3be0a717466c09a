/**
 * The sender's side of a file session (protocol.md 9.3): once the Responder has completed a
 * `p2pchat-file/1` handshake, this serves the puller's requests one at a time until it
 * closes: a manifest page, a page of sums, the bytes of a file from an offset (streamed
 * with backpressure: a block of chunks read ahead while the last is written), `done`, `decline`.
 * Only offers stored in this data dir (by any process) are served, and each only to a
 * recipient the handshake proved. Anything the protocol does not allow ends the session.
 */
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as Result from "effect/Result"
import {
  CHUNK_BYTES,
  DATA_HEADER_BYTES,
  decodeRequest,
  encodeSums,
  type ErrorCode,
  manifestPage,
  type Request,
  SUMS_PER_MESSAGE,
  writeDataHeader
} from "../domain/FileWire.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { Completed } from "../dialects/noise/index.ts"
import type { NodeConfig } from "../services/Config.ts"
import type { ItemRow, TransferRow, TransferStore } from "../services/TransferStore.ts"
import type { FrameChannel } from "../transport/Transport.ts"
import { FileError, fileError, type FileSession, makeSession } from "./Session.ts"

export interface ServerDeps {
  readonly config: Pick<NodeConfig, "idleTimeoutMs">
  readonly store: TransferStore
  /** An outgoing transfer's bytes or state changed: `served` bytes more (the engine shows and stores it). */
  readonly served: (row: TransferRow, recipient: string, served: number, state: "receiving" | "paused" | "done" | "declined") => Effect.Effect<void>
}

/** What the server refuses to a puller: said in an error reply, then the session ends. */
export class Refusal extends Data.TaggedError("Refusal")<{ readonly code: ErrorCode; readonly message: string }> {}

const refusal = (code: ErrorCode, message: string) => new Refusal({ code, message })

interface Offer {
  readonly row: TransferRow
  readonly items: ReadonlyArray<ItemRow>
}

const sendError = (session: FileSession, r: Refusal) =>
  Effect.andThen(Effect.ignore(session.control({ type: "error", code: r.code, message: r.message })), Effect.fail(r))

/** Chunks read from the file at once (one readv of about 1 MiB) and written to the socket at once. */
const BLOCK_CHUNKS = 16
/** Bytes of one data message's plaintext: its header, then a whole chunk. */
const SLOT_BYTES = DATA_HEADER_BYTES + CHUNK_BYTES

/** The end of the chunk that holds `pos`, or `end` if sooner: data messages follow the grid. */
const chunkEnd = (pos: number, end: number) => Math.min(end, (Math.floor(pos / CHUNK_BYTES) + 1) * CHUNK_BYTES)

const refusalOf = (e: unknown): Refusal =>
  e instanceof Refusal ? e : refusal("io", `cannot read the file: ${e instanceof Error ? e.message : String(e)}`)

/**
 * Reads the data messages of up to BLOCK_CHUNKS chunks from `pos` (not past `end`) into
 * `block`, in one readv: slot i holds message i, its header first; the chunk bytes are
 * read straight into place after each header. The messages, as views of `block`.
 */
const readBlock = async (fh: fs.promises.FileHandle, block: Buffer, pos: number, end: number): Promise<Array<Buffer>> => {
  const messages: Array<Buffer> = []
  const targets: Array<Buffer> = []
  let want = 0
  for (let p = pos, i = 0; p < end && i < BLOCK_CHUNKS; i++) {
    const next = chunkEnd(p, end)
    const slot = block.subarray(i * SLOT_BYTES, i * SLOT_BYTES + DATA_HEADER_BYTES + next - p)
    writeDataHeader(slot, p)
    messages.push(slot)
    targets.push(slot.subarray(DATA_HEADER_BYTES))
    want += next - p
    p = next
  }
  const { bytesRead } = await fh.readv(targets, pos)
  if (bytesRead !== want) throw refusal("changed", "the file is shorter than when it was offered")
  return messages
}

/**
 * Streams [offset, end) of an item; `count` is told of the bytes of every block written.
 * Two block buffers take turns: the next block is read from the disk, and encrypted as soon
 * as it is read (while the last one is still being written), so the socket gets it the
 * moment it drains. A block's buffer is read into again only after it was encrypted.
 */
const stream = (session: FileSession, item: ItemRow, offset: number, end: number, count: (n: number) => Effect.Effect<void>) =>
  Effect.gen(function*() {
    const fh = yield* Effect.tryPromise({
      try: () => fs.promises.open(item.source ?? "", fs.constants.O_RDONLY),
      catch: (e) => (e as NodeJS.ErrnoException).code === "ENOENT" ? refusal("gone", "the file is no longer there") : refusalOf(e)
    })
    yield* Effect.gen(function*() {
      const stat = yield* Effect.tryPromise({ try: () => fh.stat(), catch: refusalOf })
      if (stat.size !== item.size || stat.mtimeMs !== item.mtime_ms) {
        return yield* refusal("changed", "the file changed since it was offered")
      }
      const blocks = [Buffer.allocUnsafe(BLOCK_CHUNKS * SLOT_BYTES), Buffer.allocUnsafe(BLOCK_CHUNKS * SLOT_BYTES)] as const
      let turn = 0
      // Sealed in the read's callback: blocks are read one after the other, so in order.
      const readAt = (p: number) => {
        const promise = readBlock(fh, blocks[turn++ % 2]!, p, end).then((messages) => {
          let bytes = 0
          for (const m of messages) bytes += m.length - DATA_HEADER_BYTES
          return { sealed: session.seal(messages), bytes }
        })
        promise.catch(() => {}) // awaited below; never an unhandled rejection if the session ends first
        return promise
      }
      let pos = offset
      let ahead = pos < end ? readAt(pos) : undefined
      while (ahead !== undefined) {
        const block = yield* Effect.tryPromise({ try: () => ahead!, catch: (e) => e instanceof FileError ? e : refusalOf(e) })
        const next = pos + block.bytes
        ahead = next < end ? readAt(next) : undefined
        yield* session.write(block.sealed)
        yield* count(block.bytes)
        pos = next
      }
    }).pipe(Effect.ensuring(Effect.promise(() => fh.close().catch(() => {}))))
  })

/** What one session keeps: the offers it has looked up, the bytes served and not stored yet. */
const makeServing = (deps: ServerDeps, session: FileSession, peer: string) => {
  const who = usernameKey(peer)
  const offers = new Map<string, Offer>()
  /** Per transfer streamed in this session (until done or declined): bytes not stored yet, when last stored. */
  const streamed = new Map<number, { bytes: number; at: number; readonly row: TransferRow }>()
  const io = (e: { readonly message: string }) => refusal("io", e.message)

  const offerOf = (id: string) =>
    Effect.gen(function*() {
      const known = offers.get(id)
      if (known !== undefined) return known
      const row = yield* deps.store.outById(id).pipe(Effect.mapError(io))
      if (row === undefined) return yield* refusal("unknown-offer", `no offer ${id} here`)
      const recipients = yield* deps.store.recipients(row.seq).pipe(Effect.mapError(io))
      if (!recipients.some((r) => r.name_key === who)) return yield* refusal("not-yours", `the offer ${id} is not for ${peer}`)
      const offer = { row, items: yield* deps.store.items(row.seq).pipe(Effect.mapError(io)) }
      offers.set(id, offer)
      return offer
    })

  const flush = (row: TransferRow, state: "receiving" | "paused" | "done" | "declined") =>
    Effect.suspend(() => {
      const s = streamed.get(row.seq)
      const bytes = s?.bytes ?? 0
      if (s !== undefined) s.bytes = 0
      if (state === "done" || state === "declined") streamed.delete(row.seq)
      return deps.served(row, who, bytes, state)
    })

  /** Counts `n` bytes served; stored (and shown) at most once a second. */
  const count = (row: TransferRow) => (n: number) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      let s = streamed.get(row.seq)
      if (s === undefined) streamed.set(row.seq, s = { bytes: 0, at: 0, row })
      s.bytes += n
      if (now - s.at >= 1000) {
        s.at = now
        yield* flush(row, "receiving")
      }
    })

  const answer = (req: Request) =>
    Effect.gen(function*() {
      const { row, items } = yield* offerOf(req.offer)
      switch (req.type) {
        case "manifest": {
          const page = manifestPage(items.map((i) => ({ path: i.path, size: i.size, sha256: i.sha256 })), req.from)
          return yield* session.control({ type: "manifest", items: page.items, next: page.next })
        }
        case "sums": {
          const item = items[req.item]
          if (item === undefined) return yield* refusal("unknown-offer", `the offer has no file ${req.item}`)
          const n = item.sums.length / 4
          if (req.from > n) return yield* refusal("unknown-offer", `the file has no chunk ${req.from}`)
          const last = Math.min(n, req.from + SUMS_PER_MESSAGE)
          return yield* session.send(encodeSums(req.item, req.from, item.sums.subarray(req.from * 4, last * 4)))
        }
        case "get": {
          const item = items[req.item]
          if (item === undefined) return yield* refusal("unknown-offer", `the offer has no file ${req.item}`)
          if (req.offset > item.size) return yield* refusal("unknown-offer", `the file has no byte ${req.offset}`)
          const end = Math.min(item.size, req.length === undefined ? item.size : req.offset + req.length)
          return yield* stream(session, item, req.offset, end, count(row))
        }
        case "done":
        case "decline": {
          yield* flush(row, req.type === "done" ? "done" : "declined")
          return yield* session.control({ type: "ok" })
        }
      }
    })

  /** At the end of the session: what was streamed and not finished is paused, its bytes stored. */
  const finish = Effect.suspend(() => Effect.forEach([...streamed.values()], (s) => flush(s.row, "paused"), { discard: true }))
  return { answer, finish }
}

/** Serves one file session (after its handshake) until the puller closes it or it goes wrong. */
export const serveSession = (deps: ServerDeps, ch: FrameChannel, keys: Completed): Effect.Effect<void, FileError | Refusal> =>
  Effect.gen(function*() {
    const raw = yield* ch.raw.pipe(Effect.mapError((e) => fileError("Protocol", e.message, e)))
    const session = makeSession(raw, keys.transport, deps.config.idleTimeoutMs)
    const serving = makeServing(deps, session, keys.peer.username)
    yield* Effect.gen(function*() {
      yield* session.control({ type: "ready" })
      for (;;) {
        const m = yield* session.receive
        if (m._tag !== "Control") return yield* fileError("Protocol", `file session: a puller sent a ${m._tag.toLowerCase()} message`)
        const req = decodeRequest(m.json)
        if (Result.isFailure(req)) return yield* fileError("Protocol", `file session: ${req.failure}`)
        yield* serving.answer(req.success).pipe(Effect.catchIf((e): e is Refusal => e instanceof Refusal, (r) => sendError(session, r)))
      }
    }).pipe(Effect.ensuring(serving.finish))
  })

