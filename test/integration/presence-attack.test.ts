/**
 * Signed presence against a hostile LAN, end to end: in-process whole nodes (startNode: real
 * Discovery and Announcer on UDP, real responders on TCP, real SQLite data dirs), and an
 * attacker that sends its own datagrams from ANOTHER loopback address (127.0.0.66), or from
 * the victim's address with another source port, and listens on its own TCP ports to see
 * what reaches it. Loopback only: every datagram goes to 127.0.0.1. The registry-level rules
 * are in test/unit/registry.test.ts; these go through the sockets.
 *
 * Each test says, in a comment, how the code before signed presence failed it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option } from "effect"
import * as dgram from "node:dgram"
import * as net from "node:net"
import { generateKeyPair } from "../../src/domain/Noise.ts"
import { type Announcement, PROTO, presenceSignedBytes } from "../../src/domain/Presence.ts"
import { presenceSigner } from "../../src/domain/Xeddsa.ts"
import { keyId } from "../../src/services/Crypto.ts"
import { Discovery } from "../../src/services/Discovery.ts"
import type { UiEvent } from "../../src/services/Events.ts"
import { conversation, freeTcpPort, freeUdpPort, LOOPBACK, meet, polls, sleep, startNode, summary, tempDir, type TestNode } from "../support/node.ts"

/** Short timers; a pending message is also retried every 500 ms (not only when its peer is heard). */
const TUNING = { ackTimeoutMs: 500, connectTimeoutMs: 1000, classicPauseMs: 20, handshakeTimeoutMs: 1000, retryEveryMs: 500 }
/** Periodic announcements out of the way: each node announces once at start (and answers newcomers). */
const QUIET = { announceEveryMs: 60_000, awayAfterMs: 60_000, expireAfterMs: 120_000 }
const ATTACKER = "127.0.0.66"

const { waitUntil, waitUntilEffect } = polls(4000)

const start = (name: string, config: Parameters<typeof startNode>[1]["config"] = {}, dataDir?: string) =>
  startNode(name, { tuning: TUNING, config: { ...QUIET, ...config }, ...(dataDir !== undefined ? { dataDir } : {}) })

const to = (node: Pick<TestNode, "udpPort">) => ({ host: LOOPBACK, port: node.udpPort })

// ---------------------------------------------------------------------------------------------
// The attacker's sockets

/** A UDP socket bound to `fromIp` (loopback only) that sends to 127.0.0.1:port; closed with the test. */
const udpFrom = (fromIp: string) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<dgram.Socket>((resolve, reject) => {
        if (!fromIp.startsWith("127.")) return reject(new Error("loopback only"))
        const s = dgram.createSocket("udp4")
        s.bind(0, fromIp, () => resolve(s))
      })
    ),
    (s) => Effect.promise(() => new Promise<void>((done) => s.close(() => done())))
  ).pipe(Effect.map((s) => ({
    port: s.address().port,
    send: (port: number, ...payloads: ReadonlyArray<string | Uint8Array>) =>
      Effect.forEach(payloads, (p) =>
        Effect.promise(() => new Promise<void>((done, fail) => s.send(p, port, LOOPBACK, (e) => (e ? fail(e) : done()))))
      , { discard: true })
  })))

/** A UDP socket on 127.0.0.1 that keeps every datagram it receives (where bob also announces). */
const udpCapture = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ socket: dgram.Socket; got: Array<Buffer> }>((resolve) => {
      const socket = dgram.createSocket("udp4")
      const got: Array<Buffer> = []
      socket.on("message", (m) => void got.push(m))
      socket.bind(0, LOOPBACK, () => resolve({ socket, got }))
    })
  ),
  ({ socket }) => Effect.promise(() => new Promise<void>((done) => socket.close(() => done())))
).pipe(Effect.map(({ socket, got }) => ({ port: socket.address().port, got })))

/** One connection to the attacker's listener: what arrived, each chunk with `mark()` at its arrival. */
interface Caught {
  readonly chunks: Array<{ readonly data: Buffer; readonly mark: number }>
  open: boolean
}

/** The attacker's TCP listener on host:port (0: the OS's choice): it answers nothing and keeps what arrives. */
const trap = (host: string, port = 0, mark: () => number = () => 0) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ server: net.Server; sockets: Set<net.Socket>; caught: Array<Caught> }>((resolve) => {
        const sockets = new Set<net.Socket>()
        const caught: Array<Caught> = []
        const server = net.createServer((s) => {
          const c: Caught = { chunks: [], open: true }
          caught.push(c)
          sockets.add(s)
          s.on("data", (data) => void c.chunks.push({ data, mark: mark() }))
          s.on("close", () => (c.open = false, sockets.delete(s)))
          s.on("error", () => {})
        })
        server.listen(port, host, () => resolve({ server, sockets, caught }))
      })
    ),
    ({ server, sockets }) =>
      Effect.promise(() => new Promise<void>((done) => (sockets.forEach((s) => s.destroy()), server.close(() => done()))))
  ).pipe(Effect.map(({ server, caught }) => ({
    port: (server.address() as net.AddressInfo).port,
    /** Every connection it accepted, in order. */
    caught,
    /** All it received, as text. */
    text: () => Buffer.concat(caught.flatMap((c) => c.chunks.map((x) => x.data))).toString("utf8")
  })))

// ---------------------------------------------------------------------------------------------
// What the tests look at

const discoveryStats = (node: TestNode) => Context.get(node.context, Discovery).stats

const entry = (node: TestNode, name: string) => Effect.map(node.registry.lookup(name), Option.getOrUndefined)

/** Whether `node` lists `name` at address:port, announced with `id`, signed. */
const signedAt = (node: TestNode, name: string, id: string, address: string, port: number) =>
  Effect.map(entry(node, name), (p) => p !== undefined && p.address === address && p.port === port && p.id === id && p.signed)

/** The peer events of `name`, as `status address:port`. */
const peerEvents = (events: ReadonlyArray<UiEvent>, name: string) =>
  events.flatMap((e) => (e.event === "peer" && e.username === name ? [`${e.status} ${e.address}:${e.port}`] : []))

const warnings = (events: ReadonlyArray<UiEvent>) => events.flatMap((e) => (e.event === "warning" ? [e.message] : []))

/** A secret may reach the attacker neither as text nor as the base64 of a plain frame. */
const leaks = (bytes: string, secret: string) => bytes.includes(secret) || bytes.includes(Buffer.from(secret).toString("base64"))

/** alice, bob (announcing to alice and to `alsoTo`), both heard and bob signed at his own address. */
const aliceAndBob = (alsoTo: ReadonlyArray<{ host: string; port: number }> = []) =>
  Effect.gen(function*() {
    const alice = yield* start("alice")
    const bob = yield* start("bob", { targets: [to(alice), ...alsoTo] })
    yield* waitUntilEffect("alice hears bob, signed", signedAt(alice, "bob", bob.id, LOOPBACK, bob.port))
    return { alice, bob }
  })

// ---------------------------------------------------------------------------------------------

describe("signed presence through real sockets: the attacks of the issue are refused", () => {
  // Before: an announcement with bob's id counted as bob's wherever it came from (same identity:
  // refresh), so the first datagram moved bob to 127.0.0.66:<trap> (and the one from bob's own
  // address to 127.0.0.1:<trap>), and "after the attack" went to the attacker.
  it.live("attack 1: bob's id announced with the attacker's port (unsigned, forged signature, replayed copy) leaves bob where he is", () =>
    Effect.gen(function*() {
      const copy = yield* udpCapture
      const { alice, bob } = yield* aliceAndBob([{ host: LOOPBACK, port: copy.port }])
      yield* waitUntil("a copy of bob's signed announcement", () => copy.got.length > 0)
      const replay = copy.got[0]!
      assert.match(replay.toString("utf8"), /"sig":"[A-Za-z0-9_-]{86}"/)

      // The attacker listens on a port of its own, and on bob's port at its own address.
      const traps = [yield* trap(ATTACKER), yield* trap(ATTACKER, bob.port), yield* trap(LOOPBACK)]
      const claim = { username: "bob", proto: PROTO, port: traps[0]!.port, status: "online" as const, id: bob.id }
      const ts = Date.now() + 60_000 // newer than any of bob's stamps: only the signature can refuse it
      const mallory = presenceSigner(generateKeyPair().privateKey)
      const signed: Announcement = { ...claim, ts }
      const forged = { ...signed, sig: Buffer.from(mallory.sign(presenceSignedBytes({ _tag: "Announcement", value: signed }))).toString("base64url") }

      // From bob's own address, another source port: the unsigned claim to another port there.
      const nearBob = yield* udpFrom(LOOPBACK)
      yield* nearBob.send(alice.udpPort, JSON.stringify({ ...claim, port: traps[2]!.port }))
      const attacker = yield* udpFrom(ATTACKER)
      yield* attacker.send(alice.udpPort, JSON.stringify(claim), JSON.stringify(signed), JSON.stringify(forged), replay)
      // The replay goes last; datagrams from one socket arrive in order on loopback.
      yield* waitUntilEffect("the replay dropped", Effect.map(discoveryStats(alice), (s) => s.rejectedByReason["replayed"] === 1))
      const stats = yield* discoveryStats(alice)
      assert.deepStrictEqual(stats.rejectedByReason, { "bad signature": 1, replayed: 1 })

      assert.isTrue(yield* signedAt(alice, "bob", bob.id, LOOPBACK, bob.port), "bob stays at his address and port")
      assert.deepStrictEqual(peerEvents(alice.events, "bob"), [`online ${LOOPBACK}:${bob.port}`], "never moved")
      // The two unsigned claimants (the ts-only one is the attacker's again) are told once each.
      const impostor = (at: string) => `a node at ${at} claims the name 'bob' without bob's signature`
      yield* waitUntil("the impostor warnings", () => warnings(alice.events).length >= 2)
      for (const at of [ATTACKER, LOOPBACK]) {
        assert.strictEqual(warnings(alice.events).filter((w) => w.startsWith(impostor(at))).length, 1, impostor(at))
      }

      // A message to bob reaches the real bob; nothing reaches the attacker.
      assert.strictEqual((yield* alice.initiator.send("bob", "after the attack")).state, "delivered")
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), ["received alice noise received after the attack"])
      assert.deepStrictEqual(traps.map((t) => t.caught.length), [0, 0, 0])
    }))

  // Before: a bye with bob's id from bob's address removed him (the address and the public id
  // were the whole check), so the one from 127.0.0.1 with another source port made bob "left".
  it.live("attack 2: an unsigned bye with bob's id, from the attacker's address or from bob's with another port, leaves bob online", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* aliceAndBob()
      const byes = [
        JSON.stringify({ bye: "bob", id: bob.id }),
        JSON.stringify({ bye: "bob", proto: PROTO, id: bob.id, ts: Date.now() + 60_000 }) // stamped, still unsigned
      ]
      const senders = [yield* udpFrom(ATTACKER), yield* udpFrom(LOOPBACK)]
      assert.notStrictEqual(senders[1]!.port, bob.udpPort)
      // Each sender ends with an announcement of a name of its own: once alice lists it, she has
      // handled that sender's byes (one socket's datagrams arrive in order on loopback).
      for (const [i, s] of senders.entries()) yield* s.send(alice.udpPort, ...byes, JSON.stringify({ username: `marker${i}` }))
      yield* waitUntilEffect("both markers heard", Effect.map(alice.registry.list, (l) => l.filter((p) => p.username.startsWith("marker")).length === 2))

      assert.isTrue(yield* signedAt(alice, "bob", bob.id, LOOPBACK, bob.port), "bob is still listed")
      assert.strictEqual(Option.getOrThrow(yield* alice.registry.lookup("bob")).status, "online")
      assert.deepStrictEqual(peerEvents(alice.events, "bob"), [`online ${LOOPBACK}:${bob.port}`], "never shown as left")
      assert.strictEqual((yield* alice.initiator.send("bob", "still there?")).state, "delivered")
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), ["received alice noise received still there?"])
    }))

  // Before: once bob had left, `{"username":"bob","proto":"p2pchat/1","port":...}` made a
  // keyless p2pchat peer, whose default mode was plain: the secret went to the attacker as a
  // base64 plain frame; the classic shape got classic-3des (keys anyone can have); no warning.
  it.live("attack 3: after bob left, a keyless announcement of bob gets no secure message; plain only when asked, warned first; the real bob gets it once", () =>
    Effect.gen(function*() {
      const alice = yield* start("alice")
      const bobDir = yield* tempDir("bob")
      const bobConfig = { udpPort: yield* freeUdpPort, tcpPort: yield* freeTcpPort, targets: [to(alice)] }
      const bob1 = yield* start("bob", bobConfig, bobDir)
      yield* waitUntilEffect("alice hears bob", signedAt(alice, "bob", bob1.id, LOOPBACK, bob1.port))
      assert.strictEqual((yield* alice.initiator.send("bob", "we chatted before")).state, "delivered")
      const pin = yield* Effect.orDie(alice.history.getPin("bob"))
      assert.isTrue(Option.isSome(pin) && keyId(pin.value) === bob1.id, "alice pinned bob's key")
      // bob stops cleanly: his signed bye removes him
      yield* bob1.close
      yield* waitUntilEffect("bob left", Effect.map(entry(alice, "bob"), (p) => p === undefined))
      assert.deepStrictEqual(peerEvents(alice.events, "bob").map((e) => e.split(" ")[0]), ["online", "left"])

      const listener = yield* trap(ATTACKER, 0, () => alice.events.length)
      const attacker = yield* udpFrom(ATTACKER)
      const held = [
        yield* impostorGetsNothing(alice, attacker, { username: "bob", proto: PROTO, port: listener.port }),
        yield* impostorGetsNothing(alice, attacker, { username: "bob", port: listener.port })
      ]
      // Nothing reached the attacker: the send holds the message, and so do the Outbox's retries
      // (started by the impostor's announcements): a pinned name announced without a key is
      // not dialled at all.
      yield* sleep(300)
      const before = listener.caught.length
      assert.strictEqual(before, 0, "no connection to the keyless impostor")

      // Plain, asked for explicitly: the warning comes before the first byte leaves.
      const plain = yield* alice.initiator.send("bob", "plain, as asked", "plain")
      assert.deepStrictEqual([plain.mode, plain.state], ["plain", "sent"])
      const warnedAt = alice.events.findIndex((e) => e.event === "warning" && e.message.includes("goes WITHOUT a secure session (plain text), as you asked"))
      assert.isAtLeast(warnedAt, 0, "a warning")
      yield* waitUntil("the plain frame at the attacker", () => listener.caught.length > before && listener.caught[before]!.chunks.length > 0)
      assert.isBelow(warnedAt, listener.caught[before]!.chunks[0]!.mark, "warned before it was sent")
      assert.isTrue(leaks(listener.text(), "plain, as asked"), "the plain message went where the user sent it")

      // The real bob comes back (same data dir and ports, announcing signed): he gets each
      // pending secure message once; the attacker never got any.
      const bob2 = yield* start("bob", bobConfig, bobDir)
      assert.strictEqual(bob2.id, bob1.id)
      yield* realBobGetsThemOnce(alice, bob2, held)
      assert.strictEqual(listener.caught.length, before + 1, "no connection to the attacker after the plain one")
      for (const { secret } of held) assert.isFalse(leaks(listener.text(), secret), `"${secret}" reached the attacker`)
    }))

  // Before: the responder refused a secure session whose proven key was not the id the
  // registry held for its name, whoever had announced that id. bob has not heard alice here
  // (neither announces to the other; alice knows bob's address as Discovery would tell her, so
  // she answers no announcement of his either), so the spoof makes bob's only "alice" entry,
  // and its random id locked the real alice out.
  it.live("attack 4: a spoofed unsigned announcement of alice with a random id does not make bob refuse the real, pinned alice", () =>
    Effect.gen(function*() {
      const alice = yield* start("alice")
      const bob = yield* start("bob")
      yield* meet(alice, bob)
      assert.strictEqual((yield* alice.initiator.send("bob", "hello, pin me")).state, "delivered")
      const pin = yield* Effect.orDie(bob.history.getPin("alice"))
      assert.isTrue(Option.isSome(pin) && keyId(pin.value) === alice.id, "bob pinned alice's key")

      const randomId = keyId(generateKeyPair().publicKey)
      const attacker = yield* udpFrom(ATTACKER)
      yield* attacker.send(bob.udpPort, JSON.stringify({ username: "alice", proto: PROTO, port: 9, id: randomId }))
      yield* waitUntilEffect("bob lists the spoof", Effect.map(entry(bob, "alice"), (p) => p?.id === randomId && !p.signed))

      // A new session (the first one is closed), so the responder decides again.
      yield* alice.initiator.close("bob")
      yield* waitUntilEffect("bob's side of it closed", Effect.map(bob.responder.stats, (s) => s.active === 0))
      assert.strictEqual((yield* alice.initiator.send("bob", "it is really me")).state, "delivered")
      assert.strictEqual((yield* bob.responder.stats).sessionsIn, 2)
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [
        "received alice noise received hello, pin me",
        "received alice noise received it is really me"
      ])
    }))
})

/**
 * The attacker at 127.0.0.66 announces `shape` (bob without a key) to alice: a secure message
 * to bob, bob being pinned, is held as pending with a warning. The attacker announces again
 * (which retries what waits for bob). Returns the message.
 */
const impostorGetsNothing = (
  alice: TestNode,
  attacker: Effect.Success<ReturnType<typeof udpFrom>>,
  shape: { readonly username: string; readonly proto?: string; readonly port: number }
) =>
  Effect.gen(function*() {
    const proto = shape.proto ?? "classic"
    yield* attacker.send(alice.udpPort, JSON.stringify(shape))
    yield* waitUntilEffect(`the ${proto} impostor listed`, Effect.map(entry(alice, "bob"), (p) => p?.address === ATTACKER && p.proto === proto))
    const secret = `top secret (to a ${proto} impostor)`
    const told = warnings(alice.events).length
    const sent = yield* alice.initiator.send("bob", secret)
    assert.deepStrictEqual([sent.mode, sent.state], ["noise", "pending"], "secure by default, and held")
    const why = `bob has a pinned key, but the node at ${ATTACKER}:${shape.port} announces bob with no key`
    yield* waitUntil("the warning", () => warnings(alice.events).slice(told).some((w) => w.startsWith(why)))
    const last = (yield* conversation(alice, "bob")).at(-1)!
    assert.deepStrictEqual([last.id, last.mode, last.state], [sent.id, "noise", "pending"])
    const seen = (yield* entry(alice, "bob"))!.lastSeen.getTime()
    yield* attacker.send(alice.udpPort, JSON.stringify(shape))
    yield* waitUntilEffect("heard again", Effect.map(entry(alice, "bob"), (p) => p !== undefined && p.lastSeen.getTime() > seen))
    yield* sleep(100) // time for the retry that announcement starts
    return { id: sent.id, secret }
  })

/** bob is back: alice delivers each held message to him exactly once. */
const realBobGetsThemOnce = (alice: TestNode, bob: TestNode, held: ReadonlyArray<{ readonly id: string; readonly secret: string }>) =>
  Effect.gen(function*() {
    const ids = held.map((h) => h.id)
    const states = Effect.map(conversation(alice, "bob"), (c) => c.filter((e) => ids.includes(e.id)).map((e) => e.state))
    yield* waitUntilEffect("the held messages delivered", Effect.map(states, (s) => s.length === ids.length && s.every((x) => x === "delivered")))
    assert.isTrue(yield* signedAt(alice, "bob", bob.id, LOOPBACK, bob.port), "the real bob took his name back")
    yield* sleep(200) // room for a duplicate, if one were coming
    const received = (yield* conversation(bob, "alice")).filter((e) => ids.includes(e.id))
    assert.deepStrictEqual(summary(received).sort(), held.map((h) => `received alice noise received ${h.secret}`).sort())
    assert.strictEqual((yield* bob.responder.stats).duplicates, 0)
    const delivered = alice.events.flatMap((e) => (e.event === "delivered" && ids.includes(e.id) ? [e.id] : []))
    assert.deepStrictEqual(delivered.sort(), [...ids].sort())
  })
