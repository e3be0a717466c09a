/**
 * The peer registry on the TestClock (PROTOCOL.md "Peer registry"): statuses at the exact
 * boundaries of the away and expiry timers, the change stream, bye, the cap, conflicts,
 * case-insensitive keys, moves, and ages measured on the monotonic clock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { Peer } from "../../src/domain/Peer.ts"
import type { Announcement, Bye } from "../../src/domain/Presence.ts"
import { Config, type NodeConfig, testConfig } from "../../src/services/Config.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"

const AWAY_MS = 10_000
const EXPIRE_MS = 15 * 60_000

const ID_A = "A".repeat(43)
const ID_B = "B".repeat(43)

type Registry = PeerRegistry.PeerRegistry["Service"]
type RegistryChange = PeerRegistry.RegistryChange

/** Builds a registry for the rest of the test's scope, on the test's (Test)Clock. */
const makeRegistry = (overrides: Partial<NodeConfig> = {}) =>
  PeerRegistry.make.pipe(
    Effect.provideService(Config, testConfig({ dataDir: "/unused", awayAfterMs: AWAY_MS, expireAfterMs: EXPIRE_MS, ...overrides }))
  )

interface Seen {
  readonly tag: RegistryChange["_tag"]
  readonly username: string
  readonly status: Peer["status"]
  /** Monotonic test-clock milliseconds at which the change was delivered. */
  readonly at: number
  readonly change: RegistryChange
}

/** Subscribes now, and collects every change in a forked fiber. */
const collectChanges = (registry: Registry) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (change) =>
      Effect.gen(function*() {
        // Heard (a known peer announcing again) is covered on its own below.
        if (change._tag === "Heard") return
        const at = Number((yield* Clock.monotonicTimeNanos) / 1_000_000n)
        seen.push({ tag: change._tag, username: change.peer.username, status: change.peer.status, at, change })
      })))
    return seen
  })

/** Lets forked fibers (the collector) run. */
const settle = Effect.gen(function*() {
  for (let i = 0; i < 5; i++) yield* Effect.yieldNow
})

const ann = (username: string, extra: Partial<Announcement> = {}): Announcement => ({ username, ...extra })
const p2p = (username: string, id: string, extra: Partial<Announcement> = {}): Announcement =>
  ann(username, { proto: "p2pchat/1", id, port: 7001, ...extra })

const statusOf = (registry: Registry, name: string) =>
  Effect.map(registry.lookup(name), Option.match({ onNone: () => "absent" as const, onSome: (p) => p.status }))

const tags = (seen: ReadonlyArray<Seen>) => seen.map((s) => `${s.tag}:${s.username}:${s.status}`)

describe("PeerRegistry timers at the exact boundaries", () => {
  it.effect("a peer is online at age 0 and at exactly awayAfter (10 s), away at 10 s + 1 ms", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      assert.strictEqual(yield* registry.heard(ann("alice"), "10.0.0.1", 6000), "new")
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* TestClock.adjust(AWAY_MS)
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
    }))

  it.effect("a peer is still away at exactly expireAfter (15 min) and expired (removed, Expired emitted) at 15 min + 1 ms", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* TestClock.adjust(EXPIRE_MS)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      assert.strictEqual((yield* registry.list).length, 1)
      yield* settle
      assert.isFalse(seen.some((s) => s.tag === "Expired"), "expired too early")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "absent")
      assert.deepStrictEqual(yield* registry.list, [])
      yield* settle
      const expired = seen.filter((s) => s.tag === "Expired")
      assert.strictEqual(expired.length, 1)
      assert.strictEqual(expired[0]!.username, "alice")
      assert.strictEqual((yield* registry.stats).peers, 0)
    }))

  it.effect("announcing again moves an away peer back to online (StatusChanged) and restarts its timers", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* TestClock.adjust(AWAY_MS + 1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      assert.strictEqual(yield* registry.heard(ann("alice"), "10.0.0.1", 6000), "known")
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online", "StatusChanged:alice:away", "StatusChanged:alice:online"])
      // The timers count from the new announcement.
      yield* TestClock.adjust(AWAY_MS)
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
    }))

  it.effect("a peer heard again after it expired is new again (Appeared)", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* TestClock.adjust(EXPIRE_MS + 1)
      assert.strictEqual(yield* registry.heard(ann("alice"), "10.0.0.1", 6000), "new")
      yield* settle
      assert.deepStrictEqual(tags(seen), [
        "Appeared:alice:online",
        "StatusChanged:alice:away",
        "Expired:alice:away",
        "Appeared:alice:online"
      ])
    }))

  it.effect("manual away (status away in the announcement) is away while fresh, and online once it says online", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      yield* registry.heard(p2p("alice", ID_A, { status: "away" }), "10.0.0.1", 6000)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      const peer = Option.getOrThrow(yield* registry.lookup("alice"))
      assert.isTrue(peer.manualAway)
      yield* TestClock.adjust(AWAY_MS)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      yield* TestClock.adjust(EXPIRE_MS - AWAY_MS)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      yield* registry.heard(p2p("alice", ID_A, { status: "online" }), "10.0.0.1", 6000)
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* registry.heard(p2p("alice", ID_A, { status: "away" }), "10.0.0.1", 6000)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      yield* TestClock.adjust(EXPIRE_MS + 1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "absent")
    }))
})

describe("PeerRegistry change stream", () => {
  it.effect("emits Appeared, StatusChanged(away), Expired in order, each only once its boundary has passed", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online"])
      assert.strictEqual(seen[0]!.at, 0)

      // No reads from here on: only the registry's own timer may emit.
      yield* TestClock.adjust(AWAY_MS)
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online"], "away too early")
      yield* TestClock.adjust(1_000)
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online", "StatusChanged:alice:away"])
      // The sweeper may batch nearby deadlines, by 20 ms at most.
      assert.isAbove(seen[1]!.at, AWAY_MS)
      assert.isAtMost(seen[1]!.at, AWAY_MS + 20)

      yield* TestClock.adjust(EXPIRE_MS - AWAY_MS - 1_000)
      yield* settle
      assert.strictEqual(seen.length, 2, "expired too early")
      yield* TestClock.adjust(1_000)
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online", "StatusChanged:alice:away", "Expired:alice:away"])
      assert.isAbove(seen[2]!.at, EXPIRE_MS)
      assert.isAtMost(seen[2]!.at, EXPIRE_MS + 20)
      // Nothing else happens for a silent, removed peer.
      yield* TestClock.adjust(EXPIRE_MS)
      yield* settle
      assert.strictEqual(seen.length, 3)
    }))

  it.effect("keeps separate timers for peers heard at different times", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* TestClock.adjust(4_000)
      yield* registry.heard(ann("bob"), "10.0.0.2", 6000)
      yield* TestClock.adjust(6_000) // alice 10 s, bob 6 s
      yield* settle
      assert.deepStrictEqual(tags(seen), ["Appeared:alice:online", "Appeared:bob:online"])
      yield* TestClock.adjust(1_000) // alice 11 s
      yield* settle
      assert.deepStrictEqual(tags(seen).slice(2), ["StatusChanged:alice:away"])
      yield* TestClock.adjust(3_000) // bob 10 s
      yield* settle
      assert.strictEqual(seen.length, 3)
      yield* TestClock.adjust(1_000) // bob 11 s
      yield* settle
      assert.deepStrictEqual(tags(seen).slice(2), ["StatusChanged:alice:away", "StatusChanged:bob:away"])
      assert.isAbove(seen[3]!.at, 14_000)
      assert.isAtMost(seen[3]!.at, 14_020)
    }))

  it.effect("an address or port change emits Moved with the old address", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      // Signed: only a signed announcement moves a keyed peer (see "signed presence" below).
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.1", 6000, true)
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.1", 6000, true)
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.9", 6000, true)
      yield* registry.heard(p2p("alice", ID_A, { port: 7002 }), "10.0.0.9", 6000, true)
      yield* settle
      assert.deepStrictEqual(seen.map((s) => s.tag), ["Appeared", "Moved", "Moved"])
      const [, first, second] = seen.map((s) => s.change)
      assert.strictEqual(first!._tag === "Moved" && first.from, "10.0.0.1:7001")
      assert.strictEqual(first!.peer.address, "10.0.0.9")
      assert.strictEqual(second!._tag === "Moved" && second.from, "10.0.0.9:7001")
      assert.strictEqual(second!.peer.port, 7002)
      const peer = Option.getOrThrow(yield* registry.lookup("alice"))
      assert.strictEqual(peer.address, "10.0.0.9")
      assert.strictEqual(peer.port, 7002)
      assert.strictEqual(Option.getOrThrow(yield* registry.lookupByAddress("10.0.0.9")).key, "alice")
      assert.isTrue(Option.isNone(yield* registry.lookupByAddress("10.0.0.1")))
    }))
})

describe("PeerRegistry bye", () => {
  it.effect("a bye removes the peer at once and emits Left", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.1", 6000)
      const bye: Bye = { bye: "Alice", proto: "p2pchat/1", id: ID_A }
      assert.isTrue(yield* registry.bye(bye, "10.0.0.1"))
      assert.strictEqual(yield* statusOf(registry, "alice"), "absent")
      yield* settle
      assert.deepStrictEqual(seen.map((s) => s.tag), ["Appeared", "Left"])
      // Gone for good: no timer fires for it later.
      yield* TestClock.adjust(EXPIRE_MS + 1)
      yield* settle
      assert.strictEqual(seen.length, 2)
    }))

  it.effect("a bye from another id, another address, a classic sender or for an unknown name is ignored", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.1", 6000)
      assert.isFalse(yield* registry.bye({ bye: "alice", proto: "p2pchat/1", id: ID_B }, "10.0.0.2"))
      assert.isFalse(yield* registry.bye({ bye: "alice" }, "10.0.0.2"))
      assert.isFalse(yield* registry.bye({ bye: "nobody", id: ID_A }, "10.0.0.1"))
      // The id is public (every announcement carries it): a bye with it from another host is ignored.
      assert.isFalse(yield* registry.bye({ bye: "alice", proto: "p2pchat/1", id: ID_A }, "10.0.0.66"))
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* settle
      assert.deepStrictEqual(seen.map((s) => s.tag), ["Appeared"])
    }))
})

describe("PeerRegistry cap, conflicts and keys", () => {
  it.effect("with maxPeers 3 the 4th new name is refused ('full') and counted, known peers still update", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry({ maxPeers: 3 })
      const seen = yield* collectChanges(registry)
      for (const name of ["a1", "a2", "a3"]) assert.strictEqual(yield* registry.heard(ann(name), "10.0.0.1", 6000), "new")
      assert.strictEqual(yield* registry.heard(ann("a4"), "10.0.0.4", 6000), "full")
      assert.strictEqual(yield* registry.heard(ann("a5"), "10.0.0.5", 6000), "full")
      assert.strictEqual(yield* statusOf(registry, "a4"), "absent")
      assert.deepStrictEqual((yield* registry.list).map((p) => p.key), ["a1", "a2", "a3"])
      assert.deepStrictEqual(yield* registry.stats, { peers: 3, rejectedFull: 2, rejectedAddressFull: 0, conflicts: 0 })
      // A known peer still updates while the registry is full.
      yield* TestClock.adjust(AWAY_MS + 1)
      assert.strictEqual(yield* statusOf(registry, "a1"), "away")
      assert.strictEqual(yield* registry.heard(ann("A1"), "10.0.0.7", 6000), "known")
      const a1 = Option.getOrThrow(yield* registry.lookup("a1"))
      assert.strictEqual(a1.status, "online")
      assert.strictEqual(a1.address, "10.0.0.7")
      yield* settle
      assert.isFalse(seen.some((s) => s.username === "a4" || s.username === "a5"))
      // Room again once a peer has gone.
      yield* registry.bye({ bye: "a2" }, "10.0.0.1")
      assert.strictEqual(yield* registry.heard(ann("a4"), "10.0.0.4", 6000), "new")
    }))

  it.effect("a known peer announcing again emits Heard (what triggers the retry of its pending messages)", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const tags: Array<string> = []
      const changes = yield* registry.changes
      yield* Effect.forkScoped(Stream.runForEach(changes, (c) => Effect.sync(() => void tags.push(c._tag))))
      yield* settle
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* TestClock.adjust(1000)
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      yield* settle
      assert.deepStrictEqual(tags, ["Appeared", "Heard"])
    }))

  it.effect("one source address holds at most maxPeersPerAddress names, so a flood from one host leaves room for others", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry({ maxPeers: 10, maxPeersPerAddress: 2 })
      assert.strictEqual(yield* registry.heard(ann("f1"), "10.0.0.9", 6000), "new")
      assert.strictEqual(yield* registry.heard(ann("f2"), "10.0.0.9", 6000), "new")
      for (let i = 3; i <= 50; i++) assert.strictEqual(yield* registry.heard(ann(`f${i}`), "10.0.0.9", 6000), "address-full")
      // A real peer on another host still gets in, and a known name from the flooder still updates.
      assert.strictEqual(yield* registry.heard(ann("real"), "10.0.0.2", 6000), "new")
      assert.strictEqual(yield* registry.heard(ann("f1"), "10.0.0.9", 6000), "known")
      assert.strictEqual((yield* registry.stats).rejectedAddressFull, 48)
      // A name that leaves frees its address's place.
      yield* registry.bye({ bye: "f2" }, "10.0.0.9")
      assert.strictEqual(yield* registry.heard(ann("f3"), "10.0.0.9", 6000), "new")
    }))

  it.effect("a username heard from a second id is a Conflict: emitted once, the known peer kept, its conflict field set", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(p2p("alice", ID_A), "10.0.0.1", 6000)
      assert.strictEqual(yield* registry.heard(p2p("Alice", ID_B, { port: 9999 }), "10.0.0.66", 6000), "conflict")
      assert.strictEqual(yield* registry.heard(p2p("alice", ID_B), "10.0.0.66", 6000), "conflict")
      const peer = Option.getOrThrow(yield* registry.lookup("alice"))
      assert.strictEqual(peer.id, ID_A)
      assert.strictEqual(peer.address, "10.0.0.1")
      assert.strictEqual(peer.port, 7001)
      assert.strictEqual(peer.username, "alice")
      assert.strictEqual(peer.conflict, `${ID_B} 10.0.0.66 unsigned`)
      yield* settle
      const conflicts = seen.filter((s) => s.tag === "Conflict").map((s) => s.change)
      assert.strictEqual(conflicts.length, 1)
      const c = conflicts[0]!
      assert.isTrue(c._tag === "Conflict" && c.otherId === ID_B && c.otherAddress === "10.0.0.66")
      assert.strictEqual((yield* registry.stats).conflicts, 2)
      // The impostor's announcements do not keep the known peer alive.
      yield* TestClock.adjust(AWAY_MS + 1)
      yield* registry.heard(p2p("alice", ID_B), "10.0.0.66", 6000)
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      // A classic sender of the same name is another identity too.
      assert.strictEqual(yield* registry.heard(ann("alice"), "10.0.0.77", 6000), "conflict")
      yield* settle
      assert.strictEqual(seen.filter((s) => s.tag === "Conflict").length, 2)
    }))

  it.effect("usernames are case-insensitive keys: Alice and alice are one peer", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      assert.strictEqual(yield* registry.heard(ann("Alice"), "10.0.0.1", 6000), "new")
      assert.strictEqual(yield* registry.heard(ann("alice"), "10.0.0.1", 6000), "known")
      assert.strictEqual(yield* registry.heard(ann("ALICE"), "10.0.0.1", 6000), "known")
      const list = yield* registry.list
      assert.strictEqual(list.length, 1)
      assert.strictEqual(list[0]!.key, "alice")
      assert.strictEqual(list[0]!.username, "ALICE") // as last written
      assert.isTrue(Option.isSome(yield* registry.lookup("aLiCe")))
      yield* settle
      assert.deepStrictEqual(seen.map((s) => s.tag), ["Appeared"])
    }))

  it.effect("records proto, TCP port (6001 when absent), id and source UDP port", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      yield* registry.heard(ann("carol"), "10.0.0.3", 40000)
      yield* registry.heard(p2p("dave", ID_A), "10.0.0.4", 6000)
      const carol = Option.getOrThrow(yield* registry.lookup("carol"))
      assert.deepStrictEqual([carol.proto, carol.port, carol.id, carol.udpPort], ["classic", 6001, undefined, 40000])
      const dave = Option.getOrThrow(yield* registry.lookup("dave"))
      assert.deepStrictEqual([dave.proto, dave.port, dave.id, dave.udpPort], ["p2pchat/1", 7001, ID_A, 6000])
    }))
})

describe("PeerRegistry uses the monotonic clock", () => {
  // TestClock.setTime to an earlier time moves the wall clock back and leaves the
  // monotonic clock where it is; forward jumps (setTime ahead, adjust) move both, so
  // only a backward wall-clock jump can be told apart here.
  it.effect("setting the wall clock back an hour neither keeps a silent peer online nor delays its expiry", () =>
    Effect.gen(function*() {
      yield* TestClock.adjust("2 hours")
      const registry = yield* makeRegistry()
      yield* registry.heard(ann("alice"), "10.0.0.1", 6000)
      const heardAt = Option.getOrThrow(yield* registry.lookup("alice")).lastSeen.getTime()
      yield* TestClock.adjust(9_000)
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      const wallBefore = yield* Clock.currentTimeMillis
      const monoBefore = yield* Clock.monotonicTimeNanos
      yield* TestClock.setTime(wallBefore - 3_600_000)
      // The premise: wall time went back, monotonic time did not.
      assert.strictEqual(yield* Clock.currentTimeMillis, wallBefore - 3_600_000)
      assert.strictEqual(yield* Clock.monotonicTimeNanos, monoBefore)
      assert.strictEqual(yield* statusOf(registry, "alice"), "online")
      yield* TestClock.adjust(2_000) // 11 s of monotonic age, -3589 s of wall age
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      yield* TestClock.adjust(EXPIRE_MS - 11_000) // exactly 15 min of monotonic age
      assert.strictEqual(yield* statusOf(registry, "alice"), "away")
      yield* TestClock.adjust(1)
      assert.strictEqual(yield* statusOf(registry, "alice"), "absent")
      // lastSeen, for display, is wall time.
      assert.strictEqual(heardAt, 2 * 3_600_000)
    }))
})

describe("PeerRegistry: signed presence against a hostile LAN (issue: trust)", () => {
  const signedAnn = (username: string, id: string, ts: number, extra: Partial<Announcement> = {}) =>
    p2p(username, id, { ts, sig: "S".repeat(86), ...extra })

  it.effect("attack 1: bob's id announced unsigned from the attacker's address neither moves nor refreshes bob", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(signedAnn("bob", ID_A, 1), "10.0.0.2", 6000, true)
      for (let i = 0; i < 3; i++) {
        assert.strictEqual(yield* registry.heard(p2p("bob", ID_A, { port: 6666 }), "10.0.0.66", 6000), "conflict")
      }
      const bob = Option.getOrThrow(yield* registry.lookup("bob"))
      assert.deepStrictEqual([bob.address, bob.port, bob.signed], ["10.0.0.2", 7001, true])
      yield* settle
      // told once, as an unsigned claim
      const conflicts = seen.filter((s) => s.tag === "Conflict").map((s) => s.change)
      assert.strictEqual(conflicts.length, 1)
      assert.isTrue(conflicts[0]!._tag === "Conflict" && !conflicts[0]!.signed)
      const event = PeerRegistry.changeToEvent(conflicts[0]!)
      assert.match(event !== undefined && "message" in event ? event.message : "", /without bob's signature/)
      // and its announcements do not keep bob alive
      yield* TestClock.adjust(AWAY_MS + 1)
      yield* registry.heard(p2p("bob", ID_A), "10.0.0.2", 6000)
      assert.strictEqual(yield* statusOf(registry, "bob"), "away")
    }))

  it.effect("attack 2: an unsigned bye with bob's id, even from bob's own address, does not remove a signed bob; a signed one does", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      yield* registry.heard(signedAnn("bob", ID_A, 1), "10.0.0.2", 6000, true)
      assert.isFalse(yield* registry.bye({ bye: "bob", proto: "p2pchat/1", id: ID_A }, "10.0.0.66"))
      assert.isFalse(yield* registry.bye({ bye: "bob", proto: "p2pchat/1", id: ID_A }, "10.0.0.2"))
      assert.strictEqual(yield* statusOf(registry, "bob"), "online")
      // A signed bye of another key is not bob's.
      assert.isFalse(yield* registry.bye({ bye: "bob", proto: "p2pchat/1", id: ID_B, ts: 2, sig: "S".repeat(86) }, "10.0.0.66", true))
      assert.isTrue(yield* registry.bye({ bye: "bob", proto: "p2pchat/1", id: ID_A, ts: 2, sig: "S".repeat(86) }, "10.0.0.66", true))
      assert.strictEqual(yield* statusOf(registry, "bob"), "absent")
    }))

  it.effect("attack 3: bob announced with no id (p2pchat or classic) does not replace a signed bob", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      yield* registry.heard(signedAnn("bob", ID_A, 1), "10.0.0.2", 6000, true)
      assert.strictEqual(yield* registry.heard(ann("bob", { proto: "p2pchat/1", port: 6666 }), "10.0.0.66", 6000), "conflict")
      assert.strictEqual(yield* registry.heard(ann("bob", { port: 6666 }), "10.0.0.66", 6000), "conflict")
      const bob = Option.getOrThrow(yield* registry.lookup("bob"))
      assert.deepStrictEqual([bob.address, bob.id, bob.proto], ["10.0.0.2", ID_A, "p2pchat/1"])
    }))

  it.effect("a signed announcement takes a name from an unsigned entry (the impostor came first) and says it moved", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      const seen = yield* collectChanges(registry)
      yield* registry.heard(ann("bob", { proto: "p2pchat/1", port: 6666 }), "10.0.0.66", 6000)
      assert.strictEqual(yield* registry.heard(signedAnn("bob", ID_A, 1), "10.0.0.2", 6000, true), "known")
      const bob = Option.getOrThrow(yield* registry.lookup("bob"))
      assert.deepStrictEqual([bob.address, bob.port, bob.id, bob.signed], ["10.0.0.2", 7001, ID_A, true])
      yield* settle
      assert.deepStrictEqual(seen.map((s) => s.tag), ["Appeared", "Moved"])
      // An unsigned entry with a key (an old program) is not moved by an unsigned datagram either.
      yield* registry.heard(p2p("carol", ID_B), "10.0.0.3", 6000)
      assert.strictEqual(yield* registry.heard(p2p("carol", ID_B), "10.0.0.66", 6000), "conflict")
      assert.strictEqual(yield* registry.heard(p2p("carol", ID_B), "10.0.0.3", 6000), "known")
      assert.strictEqual(Option.getOrThrow(yield* registry.lookup("carol")).address, "10.0.0.3")
    }))

  it.effect("two signed keys for one name: the known one keeps it, the other is reported", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      yield* registry.heard(signedAnn("bob", ID_A, 1), "10.0.0.2", 6000, true)
      assert.strictEqual(yield* registry.heard(signedAnn("bob", ID_B, 1), "10.0.0.66", 6000, true), "conflict")
      assert.strictEqual(Option.getOrThrow(yield* registry.lookup("bob")).id, ID_A)
    }))

  it.effect("stamps: a stamp not newer than the last of its key is stale, even after bye; it fades after the expiry time", () =>
    Effect.gen(function*() {
      const registry = yield* makeRegistry()
      assert.isTrue(yield* registry.fresh(ID_A, 10))
      yield* registry.heard(signedAnn("bob", ID_A, 10), "10.0.0.2", 6000, true)
      assert.isFalse(yield* registry.fresh(ID_A, 10))
      assert.isFalse(yield* registry.fresh(ID_A, 9))
      assert.isTrue(yield* registry.fresh(ID_A, 11))
      assert.isTrue(yield* registry.fresh(ID_B, 1))
      yield* registry.bye({ bye: "bob", proto: "p2pchat/1", id: ID_A, ts: 12, sig: "S".repeat(86) }, "10.0.0.2", true)
      // a copy of bob's last announcement, replayed after bob left, is stale
      assert.isFalse(yield* registry.fresh(ID_A, 10))
      assert.isFalse(yield* registry.fresh(ID_A, 12))
      // a node whose clock went back is heard again once the memory fades
      yield* TestClock.adjust(EXPIRE_MS + 1)
      assert.isTrue(yield* registry.fresh(ID_A, 5))
    }))
})
