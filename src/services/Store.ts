/**
 * The one SQLite database of a node (`p2pchat.db` in the data dir). History and the peer
 * registry snapshot share it; this module owns the file, its settings and its schema.
 *
 * The pieces: StoreOpen.ts opens the file and refuses what it must not touch, StoreSchema.ts
 * holds the schema and its migrations, Durability.ts does the group commit behind `durable`.
 *
 * Durability contract. The connection runs in WAL mode with `synchronous = NORMAL`: a
 * commit appends its frames to `p2pchat.db-wal` and returns without fsync. A committed
 * transaction therefore survives a killed process at once, but survives a power cut only
 * once the WAL has been fsynced. `durable` is that fsync: when it succeeds, every commit
 * this connection made before `durable` was called is on disk. It runs in libuv's thread
 * pool (node:fs `fsync`), so the event loop keeps serving sockets meanwhile, and it is a
 * group commit: concurrent callers share one fsync (see Durability.ts).
 *
 * Whoever promises something to someone else about a commit calls `durable` before the
 * promise: the receiver of a message before its ack ("stored"), the sender before it
 * reports a message delivered (History.ts details both); History calls it itself for the
 * writes that are not on the message hot path (pinned and presented keys). A commit nobody
 * was promised anything about (a pending row not yet reported, the peer snapshot) may be
 * lost to a power cut, never to a crash. Only commits of this connection that change rows
 * are tracked (INSERT, UPDATE, DELETE): write nothing else after opening and expect it
 * covered.
 */
import * as fs from "node:fs"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Durability from "./Durability.ts"
import type { SqlDb } from "./Sql.ts"
import { errorMessage, StoreError } from "./StoreError.ts"
import { open } from "./StoreOpen.ts"

export type { FsyncFn } from "./Durability.ts"
export { StoreError } from "./StoreError.ts"
export { BUSY_TIMEOUT_MS, DB_FILE_NAME } from "./StoreOpen.ts"
export { APPLICATION_ID, SCHEMA_VERSION } from "./StoreSchema.ts"

export interface StoreShape {
  /** The connection (node:sqlite or better-sqlite3: see Sql.ts). */
  readonly db: SqlDb
  /** The database file, absolute. */
  readonly file: string
  /**
   * Makes every commit this connection made before the call durable (WAL fsynced), off the
   * event loop. Concurrent callers share fsyncs (group commit); a call with nothing new to
   * sync returns without one. Once an fsync has failed every later call fails too: the
   * kernel may have dropped the pages it could not write, so a later fsync that succeeds
   * would prove nothing.
   */
  readonly durable: Effect.Effect<void, StoreError>
  /** How many fsync(2) calls `durable` has completed (WAL, and at times the db file and the data dir). */
  readonly fsyncs: Effect.Effect<number>
}

export class Store extends Context.Service<Store, StoreShape>()("p2pchat/Store") {}

/**
 * The sync `durable` uses, `fs.fdatasync` unless provided otherwise: tests provide a wrapper
 * to see (and hold) each fsync.
 */
export class Fsync extends Context.Reference<Durability.FsyncFn>("p2pchat/Store/Fsync", {
  defaultValue: () => fs.fdatasync
}) {}

/**
 * The Store of a data dir: creates the dir (mode 0700) if missing, opens and checks the
 * database, migrates it, and closes it when the scope closes.
 */
export const make = (dataDir: string): Effect.Effect<StoreShape, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    const fsync = yield* Fsync
    const { opened, group } = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const opened = open(dataDir)
          return { opened, group: Durability.makeGroupSync(opened, fsync) }
        },
        catch: (e) =>
          e instanceof StoreError
            ? e
            : new StoreError({ message: `cannot open database in ${dataDir}: ${errorMessage(e)}` })
      }),
      ({ group, opened: { db } }) =>
        Effect.sync(() => {
          if (db.isOpen) db.close()
          Durability.close(group)
        })
    )
    const durable = Effect.callback<void, StoreError>((resume) => {
      const cancel = Durability.request(group, (error) => resume(error === undefined ? Effect.void : Effect.fail(error)))
      return Effect.sync(cancel)
    })
    return {
      db: opened.db,
      file: opened.file,
      durable,
      fsyncs: Effect.sync(() => group.fsyncs)
    } satisfies StoreShape
  })

export const layer = (dataDir: string): Layer.Layer<Store, StoreError> => Layer.effect(Store, make(dataDir))
