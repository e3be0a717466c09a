/**
 * The Stats counters as other processes see them: a node cannot be asked directly, so the
 * long-lived process that owns a data dir (`start`, `respond`) saves its snapshot in the
 * `meta` table of its database under the key "stats", as JSON with its `pid` and the time
 * it was taken (`updatedAt`), and `p2pchat stats` reads it there.
 *
 * When it is written: once at start (so the numbers of an earlier run are replaced at
 * once), every WRITE_EVERY_MS when a counter changed, at least every HEARTBEAT_MS even when
 * none did (so that an idle node's numbers stay fresh and it still counts as running), and
 * once more, marked `stopped`, when the node stops. A reader calls the node running when
 * the snapshot is not marked stopped and is at most STALE_AFTER_MS old (a node killed with
 * SIGKILL leaves no mark: it is called running until then).
 *
 * The row is an ordinary commit of the node's connection, like the peer snapshot: nobody
 * is promised anything about it, so it is never made durable on its own account.
 */
import * as path from "node:path"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { SqlDb } from "../services/Sql.ts"
import { Store } from "../services/Store.ts"
import { Stats, type StatsSnapshot } from "./Stats.ts"

/** The `meta` key of the saved snapshot. */
export const STATS_KEY = "stats"
/** How often the node looks whether a counter changed, and saves them if so. */
export const WRITE_EVERY_MS = 2_000
/** The longest a running node leaves its saved snapshot unwritten, changed or not. */
export const HEARTBEAT_MS = 4_000
/** A snapshot older than this was left by a node that is no longer running. */
export const STALE_AFTER_MS = 10_000

/** What a node saves: its counters, who it is and when they were taken. */
export interface SavedStats extends StatsSnapshot {
  readonly pid: number
  /** When the numbers were taken (ISO 8601, UTC). */
  readonly updatedAt: string
  /** True in the last snapshot a node saves as it stops. */
  readonly stopped: boolean
}

/** One `p2pchat stats --json` (CLI.md): the saved counters, whether their node runs, and the pending count. */
export interface StatsView extends StatsSnapshot {
  readonly running: boolean
  readonly pid: number
  readonly updatedAt: string
  /** Outgoing messages still pending in the history (not acknowledged yet). */
  readonly pending: number
}

/** No node has saved stats in this data dir, or what it saved cannot be read. */
export class StatsUnavailable extends Data.TaggedError("StatsUnavailable")<{ readonly message: string }> {}

const Count = Schema.Number

const SavedSchema = Schema.Struct({
  pid: Count,
  updatedAt: Schema.String,
  stopped: Schema.Boolean,
  accepted: Count,
  active: Count,
  peakActive: Count,
  sessionsIn: Count,
  sessionsOut: Count,
  received: Count,
  duplicates: Count,
  delivered: Count,
  sent: Count,
  sendFailures: Count,
  rejected: Count,
  rejectedByReason: Schema.Record(Schema.String, Count),
  storageFailures: Count,
  limits: Schema.Struct({
    refusedAtCap: Count,
    evictedAtCap: Count,
    firstFrameTimeout: Count,
    idleTimeout: Count,
    frameTooLarge: Count,
    // absent from a snapshot saved before this limit existed
    refusedPerAddress: Schema.optionalKey(Count)
  })
})

const decodeSaved = Schema.decodeUnknownSync(Schema.fromJsonString(SavedSchema))

const UPSERT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"

/** Saves a snapshot (throws what SQLite throws: a full disk, a locked database). */
export const writeSaved = (db: SqlDb, saved: SavedStats): void => {
  db.prepare<[string, string]>(UPSERT).run([STATS_KEY, JSON.stringify(saved)])
}

/** The saved snapshot, or undefined when none was saved; throws when it is unreadable. */
export const readSaved = (db: SqlDb): SavedStats | undefined => {
  const row = db.prepare<[string], { value: string }>("SELECT value FROM meta WHERE key = ?").get([STATS_KEY])
  if (row === undefined) return undefined
  const saved = decodeSaved(row.value)
  return { ...saved, limits: { ...saved.limits, refusedPerAddress: saved.limits.refusedPerAddress ?? 0 } }
}

/** Outgoing messages still pending in the history (the `messages_pending` index answers it). */
export const pendingCount = (db: SqlDb): number =>
  db.prepare<[], { n: number }>("SELECT count(*) AS n FROM messages WHERE direction = 'sent' AND state = 'pending'").get()?.n ?? 0

/** Whether the node that saved `saved` runs, judged at `nowMs`. */
export const isRunning = (saved: SavedStats, nowMs: number): boolean => {
  const at = Date.parse(saved.updatedAt)
  return !saved.stopped && Number.isFinite(at) && nowMs - at <= STALE_AFTER_MS
}

/** The view of a saved snapshot, fields in the order CLI.md shows them. */
export const statsView = (saved: SavedStats, pending: number, nowMs: number): StatsView => ({
  running: isRunning(saved, nowMs),
  pid: saved.pid,
  updatedAt: saved.updatedAt,
  accepted: saved.accepted,
  active: saved.active,
  peakActive: saved.peakActive,
  sessionsIn: saved.sessionsIn,
  sessionsOut: saved.sessionsOut,
  received: saved.received,
  duplicates: saved.duplicates,
  delivered: saved.delivered,
  sent: saved.sent,
  sendFailures: saved.sendFailures,
  storageFailures: saved.storageFailures,
  pending,
  rejected: saved.rejected,
  rejectedByReason: saved.rejectedByReason,
  limits: saved.limits
})

/**
 * `p2pchat stats`: the view of what the node on this data dir saved, as of `nowMs`. Fails
 * with StatsUnavailable when no node saved any, and with a one-line message when the row is unreadable.
 */
export const readStats = (store: Store["Service"], nowMs: number): Effect.Effect<StatsView, StatsUnavailable> =>
  Effect.try({
    try: () => {
      const saved = readSaved(store.db)
      return saved === undefined ? undefined : statsView(saved, pendingCount(store.db), nowMs)
    },
    catch: (e) =>
      new StatsUnavailable({ message: `cannot read the stats saved in ${store.file}: ${String(e).split("\n")[0]}` })
  }).pipe(
    Effect.flatMap((view) =>
      view !== undefined ? Effect.succeed(view) : Effect.fail(
        new StatsUnavailable({
          message: `no stats: no node has saved any in ${path.dirname(store.file)} (start one with this data dir)`
        })
      )
    )
  )

/**
 * An effect that saves the snapshot when it changed since the last save, when the last
 * save is HEARTBEAT_MS old, or always with `stopped`. A failure (a full disk) is logged when
 * saving starts failing and when it works again, not at every attempt.
 */
const makeSave = (db: SqlDb, stats: Stats["Service"]) => {
  let last: StatsSnapshot | undefined
  let lastAt = Number.NEGATIVE_INFINITY
  let failures = 0
  return (stopped: boolean): Effect.Effect<void> =>
    Effect.gen(function*() {
      const snapshot = yield* stats.snapshot
      const now = yield* Clock.currentTimeMillis
      if (!stopped && snapshot === last && now - lastAt < HEARTBEAT_MS) return
      const saved: SavedStats = { pid: process.pid, updatedAt: new Date(now).toISOString(), stopped, ...snapshot }
      yield* Effect.try(() => writeSaved(db, saved)).pipe(
        Effect.flatMap(() => {
          last = snapshot
          lastAt = now
          if (failures === 0) return Effect.void
          const n = failures
          failures = 0
          return Effect.logInfo(`stats: saved again after ${n} failed attempt(s)`)
        }),
        Effect.catch((e) =>
          failures++ === 0 ? Effect.logWarning(`stats: could not save the counters: ${String(e.cause ?? e)}`) : Effect.void
        )
      )
    })
}

/** Keeps the saved snapshot current for as long as its scope lasts; saves it once more at the end. */
export const make: Effect.Effect<void, never, Stats | Store | Scope.Scope> = Effect.gen(function*() {
  const stats = yield* Stats
  const { db } = yield* Store
  const save = makeSave(db, stats)
  yield* save(false)
  const saving = yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(WRITE_EVERY_MS), save(false))))
  // the periodic save stops first, so that no save of it can follow the last one
  yield* Effect.addFinalizer(() => Effect.andThen(Fiber.interrupt(saving), save(true)))
})

/** Saves the Stats of this process in the data dir, for `p2pchat stats`. */
export const layer: Layer.Layer<never, never, Stats | Store> = Layer.effectDiscard(make)
