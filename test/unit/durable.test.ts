/**
 * Store.durable: the WAL fsync that makes commits survive a power cut, as a group commit.
 * Real SQLite in a temp dir; the fsync goes through a spy (the Store's `Fsync` reference)
 * that logs, in one sequence with the test's commits and calls, when each fsync started and
 * ended and which file it synced, and can hold an fsync's completion to force overlaps.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer } from "effect"
import * as History from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import { DB_FILE_NAME, Fsync, type FsyncFn, type StoreShape } from "../../src/services/Store.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-durable-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

type FsyncEvent = { readonly kind: "fsync-start" | "fsync-end"; readonly id: number; readonly target: string }
type Event =
  | { readonly kind: "commit"; readonly who: string }
  | { readonly kind: "called" | "returned"; readonly who: string }
  | FsyncEvent

/** Array.prototype.findLastIndex (ES2023, beyond this project's lib). */
const lastIndex = <A>(xs: ReadonlyArray<A>, f: (a: A) => boolean): number => {
  for (let i = xs.length - 1; i >= 0; i--) if (f(xs[i]!)) return i
  return -1
}

/**
 * An fsync that logs each call (start: when the real fsync is issued; end: when its result
 * is handed back) with the file it syncs, read from /proc/self/fd. While `hold` is on, the
 * result of a finished fsync is kept until `release`: the fsync, as the Store sees it, is
 * still running.
 */
const makeSpy = () => {
  const log: Array<Event> = []
  const held: Array<() => void> = []
  let holding = false
  let ids = 0
  let failNext: NodeJS.ErrnoException | undefined
  const spy = { onStart: (_target: string) => {} }
  const fsync: FsyncFn = (fd, callback) => {
    const id = ++ids
    const target = fs.readlinkSync(`/proc/self/fd/${fd}`)
    log.push({ kind: "fsync-start", id, target })
    spy.onStart(target)
    const injected = failNext
    failNext = undefined
    fs.fsync(fd, (err) => {
      const deliver = () => {
        log.push({ kind: "fsync-end", id, target })
        callback(injected ?? err)
      }
      if (holding) held.push(deliver)
      else deliver()
    })
  }
  return {
    log,
    fsync,
    /** Called as each fsync starts, with the file it syncs. */
    set onStart(f: (target: string) => void) {
      spy.onStart = f
    },
    hold: () => void (holding = true),
    release: () => {
      holding = false
      for (const d of held.splice(0)) d()
    },
    heldCount: () => held.length,
    failNextWith: (code: string) => void (failNext = Object.assign(new Error(`${code}: injected`), { code })),
    starts: () => log.filter((e): e is FsyncEvent => e.kind === "fsync-start")
  }
}
type Spy = ReturnType<typeof makeSpy>

const openStore = (dir: string, spy: Spy) => Store.make(dir).pipe(Effect.provideService(Fsync, spy.fsync))

/** Commits one row (its own transaction) and logs it as `who`'s commit. */
const commit = (store: StoreShape, spy: Spy, who: string) =>
  Effect.sync(() => {
    store.db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)").run([who, "x"])
    spy.log.push({ kind: "commit", who })
  })

/** `store.durable`, its call and return logged as `who`'s (a forked fiber calls it once it runs). */
const durableAs = (store: StoreShape, spy: Spy, who: string) =>
  Effect.sync(() => void spy.log.push({ kind: "called", who })).pipe(
    Effect.andThen(store.durable),
    Effect.tap(() => Effect.sync(() => void spy.log.push({ kind: "returned", who })))
  )

const called = (spy: Spy, who: string) => () => spy.log.some((e) => e.kind === "called" && e.who === who)

/** Polls (real clock) until `check` holds; fails the test after 5 s. */
const waitUntil = (what: string, check: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5000
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("1 millis")
    }
  })

/**
 * The property `durable` promises, checked on the log: each caller returned only after an
 * fsync of the WAL that started after its last commit and ended before it returned.
 */
const assertCovered = (log: ReadonlyArray<Event>, walFile: string, who: string) => {
  const lastCommit = lastIndex(log, (e) => e.kind === "commit" && e.who === who)
  const returned = log.findIndex((e) => e.kind === "returned" && e.who === who)
  assert.isAtLeast(returned, 0, `${who} returned`)
  const covering = log.some((e, i) => {
    if (e.kind !== "fsync-start" || i <= lastCommit || e.target !== walFile) return false
    const end = log.findIndex((x) => x.kind === "fsync-end" && x.id === e.id)
    return end >= 0 && end < returned
  })
  assert.isTrue(covering, `${who}: no WAL fsync started after its commit (#${lastCommit}) and ended before it returned (#${returned})`)
}

/** A store with its first round done (the WAL, the db file and the dir synced once). */
const warmStore = (spy: Spy) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const store = yield* openStore(dir, spy)
    yield* store.durable
    return { dir, store, wal: `${store.file}-wal` }
  })

describe("Store.durable", () => {
  it.live("on a fresh database: the first call syncs the WAL, the db file and the data dir; then only the WAL, and only when something was committed", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const dir = yield* tempDir
      const store = yield* openStore(dir, spy)
      const file = path.join(dir, DB_FILE_NAME)
      assert.strictEqual(store.db.pragma("synchronous", { simple: true }), 1) // NORMAL
      yield* store.durable
      assert.deepStrictEqual(spy.starts().map((e) => e.target), [`${file}-wal`, file, dir])
      assert.strictEqual(yield* store.fsyncs, 3)
      yield* store.durable // nothing committed since
      assert.strictEqual(yield* store.fsyncs, 3)
      yield* commit(store, spy, "a")
      yield* durableAs(store, spy, "a")
      assert.strictEqual(yield* store.fsyncs, 4)
      assert.strictEqual(spy.starts().at(-1)?.target, `${file}-wal`)
      assertCovered(spy.log, `${file}-wal`, "a")
    }))

  it.live("50 concurrent callers after one commit each share one fsync", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { store, wal } = yield* warmStore(spy)
      const before = yield* store.fsyncs
      const callers = Array.from({ length: 50 }, (_, i) => `c${i}`)
      for (const who of callers) yield* commit(store, spy, who)
      yield* Effect.forEach(callers, (who) => durableAs(store, spy, who), { concurrency: "unbounded", discard: true })
      assert.strictEqual((yield* store.fsyncs) - before, 1)
      for (const who of callers) assertCovered(spy.log, wal, who)
    }))

  it.live("callers that commit while an fsync runs wait for the next one, which all of them share: 2 fsyncs for 50 callers", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { store, wal } = yield* warmStore(spy)
      const before = yield* store.fsyncs
      spy.hold()
      yield* commit(store, spy, "first")
      const first = yield* Effect.forkChild(durableAs(store, spy, "first"))
      yield* waitUntil("the first fsync to run", () => spy.heldCount() === 1)
      const others = Array.from({ length: 49 }, (_, i) => `o${i}`)
      const rest = yield* Effect.forkChild(Effect.forEach(others, (who) =>
        commit(store, spy, who).pipe(Effect.andThen(durableAs(store, spy, who))), { concurrency: "unbounded", discard: true }))
      yield* waitUntil("every caller's call", () => others.every((who) => called(spy, who)()))
      yield* Effect.sleep("10 millis")
      // the first fsync still runs: nobody returned, and no second fsync started
      assert.isFalse(spy.log.some((e) => e.kind === "returned"))
      assert.strictEqual(spy.starts().length - 3, 1)
      spy.release()
      yield* Fiber.join(first)
      yield* Fiber.join(rest)
      assert.strictEqual((yield* store.fsyncs) - before, 2)
      for (const who of ["first", ...others]) assertCovered(spy.log, wal, who)
    }))

  it.live("a call returns only after an fsync that started after its caller's commit, never on an earlier one still running", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { store, wal } = yield* warmStore(spy)
      spy.hold()
      yield* commit(store, spy, "a")
      const a = yield* Effect.forkChild(durableAs(store, spy, "a"))
      yield* waitUntil("a's fsync to run", () => spy.heldCount() === 1)
      // c calls while a's fsync runs, with nothing committed since it started: that fsync
      // covers every commit made before c's call
      const c = yield* Effect.forkChild(durableAs(store, spy, "c"))
      yield* waitUntil("c's call", called(spy, "c"))
      // b committed after a's fsync started: a's fsync may not have b's row
      yield* commit(store, spy, "b")
      const b = yield* Effect.forkChild(durableAs(store, spy, "b"))
      yield* waitUntil("b's call", called(spy, "b"))
      yield* Effect.sleep("10 millis")
      assert.isFalse(spy.log.some((e) => e.kind === "returned"), "returned while the only fsync still runs")
      spy.release() // a's fsync ends, b's starts; hold b's
      spy.hold()
      yield* Fiber.join(a)
      yield* Fiber.join(c)
      yield* waitUntil("b's fsync to run", () => spy.heldCount() === 1)
      assert.isFalse(spy.log.some((e) => e.kind === "returned" && e.who === "b"), "b returned on a's fsync")
      spy.release()
      yield* Fiber.join(b)
      for (const who of ["a", "b"]) assertCovered(spy.log, wal, who)
      // c returned on a's fsync, before b's started: it needed no fsync of its own
      const returnedC = spy.log.findIndex((e) => e.kind === "returned" && e.who === "c")
      const secondStart = lastIndex(spy.log, (e) => e.kind === "fsync-start")
      assert.isBelow(returnedC, secondStart)
      assert.strictEqual(spy.starts().length, 3 + 2)
    }))

  it.live("after a checkpoint (WAL truncated) the next commit is synced in the WAL again", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { store, wal } = yield* warmStore(spy)
      yield* commit(store, spy, "before")
      yield* durableAs(store, spy, "before")
      const ino = fs.statSync(wal).ino
      const [row] = store.db.pragma("wal_checkpoint(TRUNCATE)") as Array<{ busy: number }>
      assert.strictEqual(row?.busy, 0)
      assert.strictEqual(fs.statSync(wal).size, 0)
      assert.strictEqual(fs.statSync(wal).ino, ino)
      const before = yield* store.fsyncs
      yield* commit(store, spy, "after")
      yield* durableAs(store, spy, "after")
      assert.strictEqual((yield* store.fsyncs) - before, 1)
      assertCovered(spy.log, wal, "after")
      assert.isAbove(fs.statSync(wal).size, 0)
      // a call with nothing committed since: no fsync
      yield* store.durable
      assert.strictEqual((yield* store.fsyncs) - before, 1)
    }))

  it.live("a failed fsync fails that call and every later one, even when the disk then syncs again", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { store } = yield* warmStore(spy)
      yield* commit(store, spy, "x")
      spy.failNextWith("EIO")
      const first = yield* Effect.exit(store.durable)
      assert.isTrue(Exit.isFailure(first))
      yield* commit(store, spy, "y")
      const later = yield* Effect.flip(store.durable)
      assert.strictEqual(later._tag, "StoreError")
      assert.include(later.message, "EIO")
      assert.include(later.message, "power cut")
    }))
})

describe("History and durable", () => {
  const openHistory = (dir: string, spy: Spy) =>
    Effect.gen(function*() {
      const ctx = yield* Layer.build(
        History.layer.pipe(Layer.provideMerge(Store.layer(dir)), Layer.provide(Layer.succeed(Fsync, spy.fsync)))
      )
      const store = Context.get(ctx, Store.Store)
      yield* store.durable
      return { history: Context.get(ctx, History.History), store }
    })

  it.live("setPin, pinIfAbsent and setPresentedKey return only once an fsync that started after their write has ended", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { history, store } = yield* openHistory(yield* tempDir, spy)
      const wal = `${store.file}-wal`
      const key = new Uint8Array(32).fill(7)
      const at = new Date("2024-05-01T10:00:00.000Z")
      const writes = {
        setPin: history.setPin("bob", key, at),
        pinIfAbsent: history.pinIfAbsent("carol", key, at),
        setPresentedKey: history.setPresentedKey("dave", key, at)
      }
      const stored = {
        setPin: () => history.getPin("bob"),
        pinIfAbsent: () => history.getPin("carol"),
        setPresentedKey: () => history.presentedKey("dave")
      }
      for (const [name, write] of Object.entries(writes)) {
        // at the start of each fsync: was the key already committed? (the WAL fsync must come after the write)
        const seenAtStart: Array<boolean> = []
        spy.onStart = (target) => {
          if (target === wal) seenAtStart.push(Effect.runSync(stored[name as keyof typeof stored]())._tag === "Some")
        }
        spy.hold()
        const fiber = yield* Effect.forkChild(write)
        yield* waitUntil(`${name}'s fsync`, () => spy.heldCount() === 1)
        yield* Effect.sleep("10 millis")
        assert.isUndefined(fiber.pollUnsafe(), `${name} returned before its fsync ended`)
        spy.release()
        yield* Fiber.join(fiber)
        assert.deepStrictEqual(seenAtStart, [true], `${name}: one WAL fsync, started after the key was committed`)
      }
    }))

  it.live("recordSent, recordReceived and setState do not fsync (their callers call durable)", () =>
    Effect.gen(function*() {
      const spy = makeSpy()
      const { history, store } = yield* openHistory(yield* tempDir, spy)
      const before = yield* store.fsyncs
      const m = { id: "m1", peer: "bob", text: "hi", at: new Date(), mode: "noise" as const }
      yield* history.recordSent(m)
      yield* history.recordReceived({ ...m, id: "m2" })
      yield* history.setState("m1", "bob", "delivered")
      assert.strictEqual((yield* store.fsyncs) - before, 0)
      yield* store.durable
      assert.strictEqual((yield* store.fsyncs) - before, 1)
    }))
})
