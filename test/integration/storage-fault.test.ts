/**
 * Disk full and a database that cannot be written, under running nodes (issue 6, item 4):
 * a message that cannot be stored is kept in memory as pending and the user is told; once
 * the disk has room again it is stored, then delivered exactly once; nothing already stored
 * is damaged.
 *
 * The faults are made on the node's own SQLite database, the way they happen:
 *   - disk full: `PRAGMA max_page_count` on the node's own connection, set to the pages the
 *     file has now, so the next write that needs a page fails with SQLITE_FULL, exactly as
 *     on a full disk (the message texts are longer than a page, so each insert needs new
 *     pages whatever room is left in the last one);
 *   - locked: a second connection holds `BEGIN EXCLUSIVE`, so writes fail with SQLITE_BUSY
 *     once the busy timeout (shortened to 50 ms on the node's connection) runs out.
 * (The tests run as root, so chmod cannot make the data dir unwritable.)
 *
 * Whole nodes in-process (nodeRole with testConfig: 127.0.0.1, OS-chosen ports, temp data
 * dirs), secure sessions over real TCP on loopback; peers are put into each registry
 * directly, as Discovery would. Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { NodeConfig } from "../../src/services/Config.ts"
import type { SendError } from "../../src/chat/SendError.ts"
import { LOOPBACK, meet, polls, sleep, startNode as startTestNode, type TestNode } from "../support/node.ts"
import { openRaw } from "../support/sql.ts"

/** Retries every 200 ms, so that "stored and sent once the disk has room" happens by itself. */
const TUNING = { ackTimeoutMs: 500, connectTimeoutMs: 1000, classicPauseMs: 100, handshakeTimeoutMs: 1000, retryEveryMs: 200 }
/** The largest page count SQLite accepts: "the disk has room again". */
const NO_PAGE_LIMIT = 1073741823

const { waitUntilEffect } = polls(5000)

/** A whole node on a fresh temp data dir. */
const startNode = (name: string, config: Partial<NodeConfig> = {}) => startTestNode(name, { config, tuning: TUNING })

/** Two nodes that know each other and have chatted once (so both keys are pinned: pins are writes too). */
const pair = (aliceOverrides: Partial<NodeConfig> = {}) =>
  Effect.gen(function*() {
    const alice = yield* startNode("alice", aliceOverrides)
    const bob = yield* startNode("bob")
    yield* meet(alice, bob)
    yield* meet(bob, alice)
    for (const text of ["before 1", "before 2", "before 3"]) {
      assert.strictEqual((yield* alice.initiator.send("bob", text, "noise")).state, "delivered")
    }
    assert.strictEqual((yield* bob.initiator.send("alice", "hello from bob", "noise")).state, "delivered")
    return { alice, bob }
  })

interface Row {
  readonly seq: number
  readonly id: string
  readonly peer: string
  readonly direction: string
  readonly text: string
  readonly at: string
  readonly mode: string
  readonly state: string
}

const rows = (node: TestNode): ReadonlyArray<Row> =>
  node.store.db.prepare<[], Row>("SELECT seq, id, peer, direction, text, at, mode, state FROM messages ORDER BY seq").all()

const integrity = (node: TestNode): string => node.store.db.pragma("integrity_check", { simple: true }) as string

/** Disk full: no page more than the file has now (SQLITE_FULL for any write that needs one). */
const fillDisk = (node: TestNode) => {
  const pages = node.store.db.pragma("page_count", { simple: true }) as number
  const free = node.store.db.pragma("freelist_count", { simple: true }) as number
  assert.strictEqual(node.store.db.pragma(`max_page_count = ${pages}`, { simple: true }), pages)
  return { pages, free, pageSize: node.store.db.pragma("page_size", { simple: true }) as number }
}

const freeDisk = (node: TestNode) => void node.store.db.pragma(`max_page_count = ${NO_PAGE_LIMIT}`)

/** A text that needs at least `pages` new pages of its own (overflow pages), in a secure frame. */
const bigText = (label: string, bytes: number) => `${label} ` + "x".repeat(bytes)

const received = (node: TestNode, text: string) => rows(node).filter((r) => r.direction === "received" && r.text === text)

const sendError = (node: TestNode, user: string, text: string) =>
  Effect.flip(node.initiator.send(user, text, "noise")).pipe(Effect.map((e: SendError) => e))

describe("disk full or database locked on the sending side", () => {
  it.live("SQLITE_FULL: the message is kept in memory and the user told; once there is room it is stored, then delivered exactly once; earlier rows intact", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const before = rows(alice)
      assert.strictEqual(before.length, 4)

      const disk = fillDisk(alice)
      // longer than every free page together: the insert must grow the file
      const first = bigText("first while full", (disk.free + 2) * disk.pageSize)
      const second = bigText("second while full", disk.pageSize + 100)

      const e1 = yield* sendError(alice, "bob", first)
      assert.strictEqual(e1.reason, "Storage")
      assert.include(e1.message, "kept in memory until it can be stored")
      assert.include(e1.message, "full")
      const warning = alice.events.find((e) => e.event === "warning" && e.message.includes("kept in memory"))
      assert.isDefined(warning, "the user is told by an Events warning too")

      // a later message waits behind it (order is kept), also in memory
      const e2 = yield* sendError(alice, "bob", second)
      assert.strictEqual(e2.reason, "Storage")
      assert.include(e2.message, "kept in memory")
      assert.deepStrictEqual((yield* alice.initiator.unstored).map((m) => m.text), [first, second])

      // several automatic retries run meanwhile (every 200 ms): each tries to store first, and fails
      yield* sleep(700)
      assert.strictEqual(yield* alice.initiator.retryPending("bob"), 0)
      assert.strictEqual((yield* alice.initiator.unstored).length, 2)
      assert.deepStrictEqual(rows(alice), before, "nothing stored meanwhile, nothing damaged")
      assert.strictEqual(integrity(alice), "ok")
      assert.deepStrictEqual([received(bob, first).length, received(bob, second).length], [0, 0], "nothing sent unstored")

      // room again: the next retry stores both (in order), then sends them
      freeDisk(alice)
      yield* waitUntilEffect(
        "both delivered",
        Effect.sync(() => rows(alice).filter((r) => r.state === "delivered").length === 5)
      )
      const after = rows(alice)
      assert.deepStrictEqual(after.slice(0, 4), before, "the rows stored before the fault are unchanged")
      assert.deepStrictEqual(
        after.slice(4).map((r) => [r.direction, r.text, r.state, r.mode]),
        [["sent", first, "delivered", "noise"], ["sent", second, "delivered", "noise"]]
      )
      assert.deepStrictEqual((yield* alice.initiator.unstored).length, 0)
      assert.isTrue(alice.events.some((e) => e.event === "info" && e.message.includes("are stored now")))
      // exactly once on bob's side, with the ids alice stored
      yield* sleep(300)
      assert.deepStrictEqual(received(bob, first).map((r) => r.id), [after[4]!.id])
      assert.deepStrictEqual(received(bob, second).map((r) => r.id), [after[5]!.id])
      assert.strictEqual((yield* bob.responder.stats).duplicates, 0)
      assert.strictEqual(integrity(alice), "ok")
      assert.strictEqual(integrity(bob), "ok")
    }))

  it.live("SQLITE_BUSY: another connection holds BEGIN EXCLUSIVE; the message waits in memory and goes once the lock is released", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const before = rows(alice)
      const file = alice.store.file
      alice.store.db.pragma("busy_timeout = 50")
      const locker = openRaw(file)
      yield* Effect.addFinalizer(() => Effect.sync(() => locker.close()))
      locker.exec("BEGIN EXCLUSIVE")

      const e = yield* sendError(alice, "bob", "while locked")
      assert.strictEqual(e.reason, "Storage")
      assert.include(e.message, "kept in memory until it can be stored")
      assert.include(e.message, "locked")
      yield* sleep(300)
      assert.deepStrictEqual(received(bob, "while locked"), [])

      locker.exec("ROLLBACK")
      locker.close()
      yield* waitUntilEffect("delivered", Effect.sync(() => received(bob, "while locked").length === 1))
      yield* waitUntilEffect(
        "marked delivered",
        Effect.sync(() => rows(alice).some((r) => r.text === "while locked" && r.state === "delivered"))
      )
      assert.deepStrictEqual(rows(alice).slice(0, before.length), before)
      yield* sleep(300)
      assert.strictEqual(received(bob, "while locked").length, 1)
      assert.strictEqual(integrity(alice), "ok")
    }))

  it.live("the memory is bounded: beyond maxUnstoredMessages a message is refused, not kept; a classic peer's is never kept", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair({ maxUnstoredMessages: 2 })
      const disk = fillDisk(alice)
      const texts = [1, 2, 3].map((i) => bigText(`full ${i}`, (disk.free + 2) * disk.pageSize))
      for (const t of texts.slice(0, 2)) assert.include((yield* sendError(alice, "bob", t)).message, "kept in memory")
      const refused = yield* sendError(alice, "bob", texts[2]!)
      assert.strictEqual(refused.reason, "Storage")
      assert.include(refused.message, "not sent and not kept")
      assert.strictEqual((yield* alice.initiator.unstored).length, 2)

      // a classic peer (no proto): refused at once, before any connection
      yield* alice.registry.heard({ username: "oldtimer", port: 9 }, LOOPBACK, 0)
      const classic = yield* Effect.flip(alice.initiator.send("oldtimer", texts[0]!, "classic-3des"))
      assert.strictEqual(classic.reason, "Storage")
      assert.include(classic.message, "classic peers get one attempt")
      assert.strictEqual((yield* alice.initiator.unstored).length, 2)

      freeDisk(alice)
      yield* waitUntilEffect("the two kept ones delivered", Effect.sync(() => texts.slice(0, 2).every((t) => received(bob, t).length === 1)))
      assert.strictEqual(received(bob, texts[2]!).length, 0)
    }))
})

describe("disk full on the receiving side", () => {
  it.live("the receiver cannot store: no ack, the sender keeps it pending; once the receiver has room, delivered exactly once", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* pair()
      const bobBefore = rows(bob)
      const disk = fillDisk(bob)
      const text = bigText("to a full receiver", (disk.free + 2) * disk.pageSize)
      const e = yield* sendError(alice, "bob", text)
      assert.strictEqual(e.reason, "Timeout", "no ack for a message the receiver could not store")
      assert.isTrue(rows(alice).some((r) => r.text === text && r.state === "pending"))
      yield* waitUntilEffect("storage failures counted", Effect.map(bob.responder.stats, (s) => s.storageFailures >= 1))
      assert.deepStrictEqual(rows(bob), bobBefore)

      freeDisk(bob)
      yield* waitUntilEffect(
        "delivered after the receiver has room",
        Effect.sync(() => rows(alice).some((r) => r.text === text && r.state === "delivered")),
        8000
      )
      yield* sleep(300)
      assert.strictEqual(received(bob, text).length, 1)
      assert.deepStrictEqual(rows(bob).slice(0, bobBefore.length), bobBefore)
      assert.strictEqual(integrity(bob), "ok")
    }))
})
