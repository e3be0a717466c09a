/**
 * The Transfers service (Transfers.ts) of a node: offers prepared and stored, offers received
 * and accepted, the file server a Responder hands file sessions to, and, in a node
 * (`layer`), the fetching itself: every accepted transfer is fetched in a fiber of the
 * service's scope, and one that stopped (a cut connection, a restart, a full disk, another
 * process's `accept`) is taken up again when the node starts, when its sender is heard
 * online, and every few seconds (with a growing pause after each failure, at most a minute).
 * `clientLayer` (`send`, `send-file` beside a running node) prepares, records and lists, and
 * leaves the fetching to the node that runs on the data dir.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import type { FileOffer } from "../domain/Transfer.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Config } from "../services/Config.ts"
import { Crypto } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { History } from "../services/History.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { Store } from "../services/Store.ts"
import { makeTransferStore, type TransferRow } from "../services/TransferStore.ts"
import { Transport } from "../transport/Transport.ts"
import { Trust } from "../trust/Trust.ts"
import { connect, type FetchDeps, fetchTransfer } from "./Fetch.ts"
import { MAX_FOLDER_FILES, prepare } from "./Prepare.ts"
import { makeProgress, toTransfer } from "./Progress.ts"
import { serveSession } from "./Server.ts"
import type { FileError } from "./Session.ts"
import { TransferError, Transfers } from "./Transfers.ts"

/** How often a node looks for transfers to take up (another process's accept, a paused one whose pause is over). */
export const SWEEP_EVERY_MS = 3000
const MAX_PAUSE_MS = 60_000

const storageError = (e: { readonly message: string }) => new TransferError({ reason: "Storage", message: e.message, cause: e })

/** Failures after which a transfer waits and is tried again, rather than failing for good. */
const retryable = (e: FileError): boolean =>
  e.reason === "Network" || e.reason === "Protocol" || e.reason === "DiskFull" || e.reason === "Storage"

/** Bytes free for an unprivileged user on the file system of `dir` (or its nearest existing parent). */
const freeBytes = (dir: string): number | undefined => {
  try {
    const s = fs.statfsSync(dir)
    return s.bavail * s.bsize
  } catch {
    return undefined
  }
}

const Deps = Effect.gen(function*() {
  const store = yield* Store
  return {
    config: yield* Config,
    db: store,
    store: makeTransferStore(store.db),
    events: yield* Events,
    registry: yield* PeerRegistry,
    trust: yield* Trust,
    history: yield* History,
    crypto: yield* Crypto,
    transport: yield* Transport
  }
})
type Deps = Effect.Success<typeof Deps>

/** The fetching of a node: which transfers run, and when a stopped one may be tried again. */
const makeFetcher = (deps: Deps, progress: ReturnType<typeof makeProgress>) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    // fetches run with the node's services (its logger...), whoever started them
    const context = yield* Effect.context<never>()
    const running = new Set<number>()
    const pauses = new Map<number, { tries: number; until: number }>()
    const fetchDeps: FetchDeps = { ...deps, progress: progress.progress }

    const setState = (row: TransferRow, state: TransferRow["state"], fields: Partial<Pick<TransferRow, "bytes" | "path" | "reason">>) =>
      Effect.gen(function*() {
        const next = { ...row, state, bytes: fields.bytes ?? row.bytes, path: fields.path ?? row.path, reason: fields.reason ?? null }
        yield* deps.store.setState(row.seq, state, next, new Date(yield* Clock.currentTimeMillis)).pipe(Effect.ignore)
        yield* progress.changed(next)
        return next
      })

    const stopped = (row: TransferRow, e: FileError) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const current = (yield* deps.store.bySeq(row.seq).pipe(Effect.orElseSucceed(() => undefined))) ?? row
        if (current.state === "declined") return
        if (retryable(e)) {
          const tries = (pauses.get(row.seq)?.tries ?? 0) + 1
          pauses.set(row.seq, { tries, until: now + Math.min(MAX_PAUSE_MS, 1000 * 2 ** tries) })
          yield* Effect.logInfo(`transfer: ${row.name} from ${row.peer_name} paused: ${e.message}`)
          return yield* setState(current, "paused", { reason: e.message })
        }
        pauses.delete(row.seq)
        yield* Effect.logWarning(`transfer: ${row.name} from ${row.peer_name} failed: ${e.message}`)
        yield* setState(current, "failed", { reason: e.message })
      })

    const run = (seq: number) =>
      Effect.gen(function*() {
        const row = yield* deps.store.bySeq(seq).pipe(Effect.orElseSucceed(() => undefined))
        if (row === undefined || (row.state !== "receiving" && row.state !== "paused")) return
        const started = row.state === "receiving" ? row : yield* setState(row, "receiving", { reason: null })
        const landed = yield* Effect.scoped(fetchTransfer(fetchDeps, started)).pipe(
          Effect.catchTag("FileError", (e) => Effect.as(stopped(started, e), undefined))
        )
        if (landed === undefined) return
        pauses.delete(seq)
        const now = (yield* deps.store.bySeq(seq).pipe(Effect.orElseSucceed(() => undefined))) ?? started
        yield* setState(now, "done", { bytes: now.size, path: landed })
        yield* Effect.logInfo(`transfer: ${now.name} from ${now.peer_name} received in ${landed}`)
      }).pipe(Effect.ensuring(Effect.sync(() => void running.delete(seq))))

    /** Starts fetching `seq` unless it runs already, or (`eager` aside) its pause is not over. */
    const start = (seq: number, eager = false) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        if (running.has(seq) || (!eager && (pauses.get(seq)?.until ?? 0) > now)) return
        running.add(seq)
        yield* Effect.forkIn(Effect.provideContext(run(seq), context), scope)
      })

    /** Every transfer being received or paused (of `sender`, when given) that is not running. */
    const sweep = (sender?: string, eager = false) =>
      Effect.gen(function*() {
        const active = yield* deps.store.active.pipe(Effect.orElseSucceed(() => []))
        for (const row of active) if (sender === undefined || row.peer === sender) yield* start(row.seq, eager)
      })

    return { start, sweep, setState }
  })

/** Answers a sender's decline: tells it over a file session, if it can be reached soon. */
const tellDecline = (deps: Deps, row: TransferRow) =>
  Effect.scoped(Effect.gen(function*() {
    const session = yield* connect({ ...deps, progress: () => Effect.void }, row)
    yield* session.control({ type: "decline", offer: row.id })
    yield* session.receive
  })).pipe(Effect.timeout("5 seconds"), Effect.ignore)

type Progress = ReturnType<typeof makeProgress>
type Fetcher = Effect.Success<ReturnType<typeof makeFetcher>>

const nowDate = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms))

/** The incoming offer with this id (the newest, should two senders have used it). */
const incoming = (deps: Deps, id: string) =>
  Effect.gen(function*() {
    const rows = yield* deps.store.byId(id).pipe(Effect.mapError(storageError))
    const row = rows.find((r) => r.direction === "in")
    if (row === undefined) return yield* new TransferError({ reason: "NotFound", message: `no file offered to you has the id ${id}` })
    return row
  })

/** Transfers.prepare: each PATH read, hashed and stored as an offer to `recipients`. */
const makePrepare = (deps: Deps, progress: Progress) =>
(paths: ReadonlyArray<string>, recipients: ReadonlyArray<string>, given?: string) =>
  Effect.gen(function*() {
    if (paths.length === 0) return yield* new TransferError({ reason: "Usage", message: "no file or folder to send" })
    if (recipients.length === 0) return yield* new TransferError({ reason: "Usage", message: "nobody to send to" })
    const target = given ?? (recipients.length === 1 ? recipients[0]! : recipients.join(","))
    const offers: Array<FileOffer> = []
    for (const p of paths) {
      const prepared = yield* prepare(p).pipe(
        Effect.mapError((e) => new TransferError({ reason: e.reason === "Io" ? "Io" : "Refused", message: e.message, cause: e }))
      )
      const row = yield* deps.store.addOut(
        prepared.offer,
        { key: usernameKey(target), name: target },
        recipients.map((r) => ({ key: usernameKey(r), name: r })),
        prepared.items,
        yield* nowDate
      ).pipe(Effect.mapError(storageError))
      yield* progress.changed(row)
      offers.push(prepared.offer)
    }
    return offers
  })

/** Transfers.accept: the size and the free space checked, then fetched (by this node, or the one running). */
const makeAccept = (deps: Deps, fetcher: Fetcher, background: boolean) => (id: string) =>
  Effect.gen(function*() {
    const row = yield* incoming(deps, id)
    if (row.state === "done" || row.state === "receiving") return toTransfer(row)
    if (row.state === "declined") return yield* new TransferError({ reason: "Refused", message: `${row.name} was declined` })
    if (row.size > deps.config.maxFileSize || row.count > MAX_FOLDER_FILES) {
      const reason = row.count > MAX_FOLDER_FILES
        ? `too many files: ${row.count}, more than ${MAX_FOLDER_FILES}`
        : `too large: ${row.size} bytes, more than --max-file-size (${deps.config.maxFileSize} bytes)`
      yield* fetcher.setState(row, "failed", { reason })
      return yield* new TransferError({ reason: "Refused", message: `${row.name} is ${reason}` })
    }
    yield* Effect.try({
      try: () => fs.mkdirSync(deps.config.downloads, { recursive: true, mode: 0o700 }),
      catch: (e) => new TransferError({ reason: "Io", message: `cannot create ${deps.config.downloads}: ${String(e)}`, cause: e })
    })
    const free = freeBytes(deps.config.downloads)
    if (free !== undefined && free < row.size - row.bytes) {
      return yield* new TransferError({
        reason: "Refused",
        message: `not enough free space in ${deps.config.downloads} for ${row.name} (${row.size} bytes needed, ${free} free)`
      })
    }
    const started = yield* fetcher.setState(row, "receiving", { reason: null })
    if (background) yield* fetcher.start(row.seq, true)
    return toTransfer(started)
  })

/** Transfers.offered: recorded once, shown, and accepted at once from a sender the user listed and verified. */
const makeOffered = (deps: Deps, progress: Progress, accept: (id: string) => Effect.Effect<unknown, TransferError>) =>
(sender: string, offer: FileOffer) =>
  Effect.gen(function*() {
    const key = usernameKey(sender)
    const added = yield* deps.store.addIn({ key, name: sender }, offer, yield* nowDate)
    if (!added) return
    const row = yield* deps.store.inOf(key, offer.id)
    if (row !== undefined) yield* progress.changed(row)
    if (!deps.config.acceptFilesFrom.some((n) => usernameKey(n) === key)) return
    // A verified key only: the offer's own session pins an unknown sender on first use, so
    // "pinned" would let anyone who takes a listed name first fill the downloads.
    if (!(yield* deps.history.isVerified(key).pipe(Effect.orElseSucceed(() => false)))) {
      const message = `${offer.name} from ${sender} waits for accept: --accept-files-from takes offers only from a key you ` +
        `verified (p2pchat trust ${sender} FINGERPRINT)`
      return yield* deps.events.publish({ event: "info", message })
    }
    yield* accept(offer.id).pipe(
      Effect.catch((e) => deps.events.publish({ event: "warning", message: `${offer.name} from ${sender} not accepted: ${e.message}` }))
    )
  }).pipe(
    Effect.catch((e) =>
      Effect.andThen(
        Effect.logError(`transfer: cannot record an offer from ${sender}: ${e.message}`),
        deps.events.publish({ event: "error", message: `cannot record the file ${offer.name} offered by ${sender}: ${e.message}` })
      )
    )
  )

/** What the server tells of a recipient's transfer: stored, and shown. */
const makeServed = (deps: Deps, progress: Progress) =>
(row: TransferRow, recipient: string, bytes: number, state: "receiving" | "paused" | "done" | "declined") =>
  Effect.gen(function*() {
    yield* deps.store.setRecipient(row.seq, recipient, state, bytes, yield* nowDate)
    const updated = yield* deps.store.bySeq(row.seq)
    if (updated !== undefined) yield* progress.publish(updated)
  }).pipe(Effect.catch((e) => Effect.logWarning(`transfer: cannot store what was served of ${row.name}: ${e.message}`)))

/** A node takes up what was under way when it stopped, then whoever is heard online, and sweeps. */
const startBackground = (deps: Deps, fetcher: Fetcher) =>
  Effect.gen(function*() {
    yield* fetcher.sweep(undefined, true)
    const changes = yield* deps.registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) =>
      (c._tag === "Appeared" || c._tag === "StatusChanged" || c._tag === "Moved" || c._tag === "Heard") && c.peer.status === "online"
        ? fetcher.sweep(c.peer.key)
        : Effect.void))
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(SWEEP_EVERY_MS), fetcher.sweep())))
  })

const makeWith = (background: boolean) =>
  Effect.gen(function*() {
    const deps = yield* Deps
    const progress = makeProgress(deps.events, deps.store)
    const fetcher = yield* makeFetcher(deps, progress)
    const accept = makeAccept(deps, fetcher, background)
    const served = makeServed(deps, progress)
    if (background) yield* startBackground(deps, fetcher)

    return Transfers.of({
      prepare: makePrepare(deps, progress),
      offered: makeOffered(deps, progress, accept),
      accept,
      decline: (id) =>
        Effect.gen(function*() {
          const row = yield* incoming(deps, id)
          if (row.state === "done") return yield* new TransferError({ reason: "Refused", message: `${row.name} is received already` })
          const declined = yield* fetcher.setState(row, "declined", {})
          yield* tellDecline(deps, row)
          return toTransfer(declined)
        }),
      list: Effect.map(deps.store.list, (rows) => rows.map(toTransfer)).pipe(Effect.mapError(storageError)),
      get: (id) =>
        Effect.gen(function*() {
          const rows = yield* deps.store.byId(id).pipe(Effect.mapError(storageError))
          if (rows.length === 0) return yield* new TransferError({ reason: "NotFound", message: `no transfer has the id ${id}` })
          return toTransfer(rows[0]!)
        }),
      serve: (ch, keys) =>
        serveSession({ config: deps.config, store: deps.store, served }, ch, keys).pipe(
          Effect.catch((e) => Effect.logDebug(`transfer: file session with ${keys.peer.username} ended: ${e.message}`))
        )
    })
  })

/** A node's transfers: prepares, records, serves and fetches (and takes up what stopped). */
export const make = makeWith(true)
export const layer = Layer.effect(Transfers, make)

/** Beside a running node (`send`, `send-file`): prepares, records and lists; the node fetches. */
export const clientLayer = Layer.effect(Transfers, makeWith(false))
