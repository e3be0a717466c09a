/**
 * The Stats snapshot a node saves in its data dir for `p2pchat stats` (StatsSnapshot.ts), on
 * a real SQLite file in a temp dir and the TestClock: saved at start, saved again within
 * WRITE_EVERY_MS of a change, at least every HEARTBEAT_MS without one, marked stopped when
 * the node stops; read back with the pending count and the running flag by age.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Stats from "../../src/chat/Stats.ts"
import * as StatsSnapshot from "../../src/chat/StatsSnapshot.ts"
import { HEARTBEAT_MS, readSaved, readStats, STALE_AFTER_MS, WRITE_EVERY_MS } from "../../src/chat/StatsSnapshot.ts"
import * as History from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import { statsLines } from "../../src/ui/render.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-stats-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A node's Stats, History and Store, with the snapshot writer, in a scope the test closes. */
const startNode = (dataDir: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const layer = StatsSnapshot.layer.pipe(
      Layer.provideMerge(Layer.mergeAll(Stats.layer, History.layer)),
      Layer.provideMerge(Store.layer(dataDir))
    )
    const ctx = yield* Layer.buildWithScope(layer, scope)
    return {
      stats: Context.get(ctx, Stats.Stats),
      history: Context.get(ctx, History.History),
      store: Context.get(ctx, Store.Store),
      stop: Scope.close(scope, Exit.void)
    }
  })

/** Another process's view: its own connection to the data dir's database. */
const readAs = <A, E>(dataDir: string, f: (store: Store.StoreShape) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.flatMap(Store.make(dataDir), f))

const savedIn = (dataDir: string) => readAs(dataDir, (store) => Effect.sync(() => readSaved(store.db)))

describe("the saved Stats snapshot", () => {
  it.effect("is saved at start, and within WRITE_EVERY_MS of a change, with pid and time", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* TestClock.setTime(Date.parse("2026-12-01T10:00:00.000Z"))
      const node = yield* startNode(dir)
      const first = yield* savedIn(dir)
      assert.isDefined(first)
      assert.strictEqual(first!.pid, process.pid)
      assert.strictEqual(first!.updatedAt, "2026-12-01T10:00:00.000Z")
      assert.strictEqual(first!.received, 0)
      assert.strictEqual(first!.stopped, false)

      yield* node.stats.add("accepted", 3)
      yield* node.stats.add("active")
      yield* node.stats.add("sessionsIn")
      yield* node.stats.add("received", 2)
      yield* node.stats.reject("NotJson")
      yield* node.stats.bite("idleTimeout")
      yield* TestClock.adjust(WRITE_EVERY_MS)
      const saved = yield* savedIn(dir)
      assert.strictEqual(saved!.updatedAt, "2026-12-01T10:00:02.000Z")
      assert.deepStrictEqual(
        [saved!.accepted, saved!.active, saved!.peakActive, saved!.sessionsIn, saved!.received, saved!.rejected],
        [3, 1, 1, 1, 2, 1]
      )
      assert.deepStrictEqual(saved!.rejectedByReason, { NotJson: 1 })
      assert.strictEqual(saved!.limits.idleTimeout, 1)
      yield* node.stop
    }))

  it.effect("is not rewritten without a change until HEARTBEAT_MS, then kept fresh", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* TestClock.setTime(Date.parse("2026-12-01T10:00:00.000Z"))
      const node = yield* startNode(dir)
      yield* TestClock.adjust(WRITE_EVERY_MS)
      assert.strictEqual((yield* savedIn(dir))!.updatedAt, "2026-12-01T10:00:00.000Z")
      yield* TestClock.adjust(HEARTBEAT_MS)
      const fresh = Date.parse((yield* savedIn(dir))!.updatedAt)
      assert.isAtLeast(fresh, Date.parse("2026-12-01T10:00:00.000Z") + HEARTBEAT_MS)
      assert.isAtMost(fresh, Date.parse("2026-12-01T10:00:00.000Z") + HEARTBEAT_MS + WRITE_EVERY_MS)
      yield* node.stop
    }))

  it.effect("reads back with the pending count, running while fresh, not once stale", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const start = Date.parse("2026-12-01T10:00:00.000Z")
      yield* TestClock.setTime(start)
      const node = yield* startNode(dir)
      yield* node.history.recordSent({ id: "m1", peer: "bob", text: "hi", at: new Date(start), mode: "noise" })
      yield* node.history.recordSent({ id: "m2", peer: "bob", text: "ho", at: new Date(start), mode: "noise" })
      yield* node.history.setState("m2", "bob", "delivered")
      yield* node.stats.add("delivered")
      yield* TestClock.adjust(WRITE_EVERY_MS)
      const at = start + WRITE_EVERY_MS

      const fresh = yield* readAs(dir, (store) => readStats(store, at + STALE_AFTER_MS))
      assert.strictEqual(fresh.running, true)
      assert.strictEqual(fresh.pending, 1)
      assert.strictEqual(fresh.delivered, 1)
      assert.strictEqual(fresh.updatedAt, new Date(at).toISOString())
      assert.strictEqual(statsLines(fresh)[0], `running (pid ${process.pid}); numbers from 2026-12-01 10:00:02 UTC`)

      const stale = yield* readAs(dir, (store) => readStats(store, at + STALE_AFTER_MS + 1))
      assert.strictEqual(stale.running, false)
      assert.strictEqual(statsLines(stale)[0], `not running; last numbers from 2026-12-01 10:00:02 UTC (pid ${process.pid})`)
      yield* node.stop
    }))

  it.effect("is saved once more when the node stops, and then says not running however fresh", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* TestClock.setTime(Date.parse("2026-12-01T10:00:00.000Z"))
      const node = yield* startNode(dir)
      yield* node.stats.add("received", 5)
      yield* node.stop
      const saved = yield* savedIn(dir)
      assert.strictEqual(saved!.received, 5)
      assert.strictEqual(saved!.stopped, true)
      const view = yield* readAs(dir, (store) => readStats(store, Date.parse(saved!.updatedAt)))
      assert.strictEqual(view.running, false)
    }))

  it.effect("fails with a one-line message when no node saved stats, or the row is unreadable", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const none = yield* Effect.flip(readAs(dir, (store) => readStats(store, Date.now())))
      assert.strictEqual(none._tag, "StatsUnavailable")
      assert.match(none.message, /^no stats: no node has saved any in /)
      assert.notInclude(none.message, "\n")

      yield* readAs(dir, (store) =>
        Effect.sync(() => store.db.prepare("INSERT INTO meta (key, value) VALUES ('stats', '{\"pid\":1}')").run()))
      const bad = yield* Effect.flip(readAs(dir, (store) => readStats(store, Date.now())))
      assert.match(bad.message, /^cannot read the stats saved in /)
      assert.notInclude(bad.message, "\n")
    }))

  it.effect("a failing save does not stop the node, and the next one after it works", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      yield* TestClock.setTime(Date.parse("2026-12-01T10:00:00.000Z"))
      const node = yield* startNode(dir)
      // a trigger that refuses every change of the row, as a full disk would
      yield* Effect.sync(() =>
        node.store.db.exec("CREATE TRIGGER no_stats BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, 'disk full'); END")
      )
      yield* node.stats.add("received")
      yield* TestClock.adjust(WRITE_EVERY_MS)
      assert.strictEqual((yield* savedIn(dir))!.received, 0)
      yield* Effect.sync(() => node.store.db.exec("DROP TRIGGER no_stats"))
      yield* TestClock.adjust(WRITE_EVERY_MS)
      assert.strictEqual((yield* savedIn(dir))!.received, 1)
      yield* node.stop
    }))
})
