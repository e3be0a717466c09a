/**
 * The chat roles (Initiator -> Outbox -> Links; Responder -> Inbox) of two nodes, alice and
 * bob, on one MemoryNetwork: no chat socket, no presence socket. Each node is the sending
 * and receiving side over its own registry, Crypto, History and Store (a temp data dir);
 * the registries are fed by hand as Discovery would, at the peers' memory addresses.
 *
 * The fsync of the Store answers at once (asynchronously, as fs.fsync does): these tests
 * are about the roles, and the ack timeouts below must not depend on this disk's speed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Initiator, type SendResult } from "../../src/chat/Initiator.ts"
import { Responder } from "../../src/chat/Responder.ts"
import { SendError } from "../../src/chat/SendError.ts"
import { Stats } from "../../src/chat/Stats.ts"
import { type InitiatorTuning } from "../../src/chat/Tuning.ts"
import type { Frame } from "../../src/domain/Frames.ts"
import { baseLayer, chatSide, receiving, sending, storeOf } from "../../src/layers/Node.ts"
import { type NodeConfig, testConfig } from "../../src/services/Config.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import * as HistoryService from "../../src/services/History.ts"
import { History } from "../../src/services/History.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"
import { Fsync } from "../../src/services/Store.ts"
import * as MemoryTransport from "../../src/transport/MemoryTransport.ts"
import { Transport } from "../../src/transport/Transport.ts"
import { buildOwned, conversation, messageEvents, polls, summary, tempDir, withTuning } from "../support/node.ts"

const ALICE = "10.0.0.1"
const BOB = "10.0.0.2"
const FAKE = "10.0.0.3"
const NOBODY = "10.0.0.9"
const PORT = 6001

/** Acks come at once in memory; a generous timeout keeps the good paths independent of load. */
const TUNING: InitiatorTuning = { ackTimeoutMs: 3000, connectTimeoutMs: 1000, classicPauseMs: 0, retryEveryMs: 60_000 }

const { waitUntilEffect } = polls(2000)

/** fs.fsync's shape, answering on the next turn of the event loop. */
const instantFsync = (_fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => setImmediate(() => callback(null))

/** A node's chat stack on `network` at `address`: Initiator and Responder, nothing on presence. */
const startNode = (
  network: MemoryTransport.MemoryNetwork,
  name: string,
  address: string,
  options: { readonly tuning?: InitiatorTuning; readonly config?: Partial<NodeConfig> } = {}
) =>
  Effect.gen(function*() {
    const dataDir = yield* tempDir(`roles-${name}`)
    const config = testConfig({ name, dataDir, bind: address, tcpPort: PORT, ...options.config })
    const layer = chatSide(Layer.mergeAll(sending, receiving), MemoryTransport.layer(network, address)).pipe(
      Layer.provideMerge(PeerRegistry.layer),
      Layer.provideMerge(Crypto.layer),
      Layer.provideMerge(HistoryService.layer),
      Layer.provideMerge(storeOf(config)),
      Layer.provideMerge(baseLayer(config)),
      Layer.provide(Layer.succeed(Fsync, instantFsync))
    )
    const { ctx, events } = yield* buildOwned(withTuning(layer, options.tuning ?? TUNING))
    return {
      name,
      address,
      id: Context.get(ctx, Crypto.Crypto).identity.id,
      registry: Context.get(ctx, PeerRegistry.PeerRegistry),
      history: Context.get(ctx, History),
      initiator: Context.get(ctx, Initiator),
      responder: Context.get(ctx, Responder),
      stats: Context.get(ctx, Stats).snapshot,
      events
    }
  })

type Node = Effect.Success<ReturnType<typeof startNode>>

/** Tells `node` that the p2pchat node `peer` (with its key) is at `address`, as Discovery would. */
/** As Discovery would on hearing `peer`'s signed announcement (or, without its key, an unsigned one). */
const meet = (node: Node, peer: Pick<Node, "name" | "id">, address: string, withKey = true) =>
  node.registry.heard(
    { username: peer.name, proto: "p2pchat/1", port: PORT, ...(withKey ? { id: peer.id } : {}) },
    address,
    0,
    withKey
  )

/** alice and bob on one network, each knowing the other at its own address. */
const twoNodes = (options: { readonly bob?: Partial<NodeConfig>; readonly aliceTuning?: InitiatorTuning } = {}) =>
  Effect.gen(function*() {
    const network = MemoryTransport.makeNetwork()
    const alice = yield* startNode(network, "alice", ALICE, options.aliceTuning ? { tuning: options.aliceTuning } : {})
    const bob = yield* startNode(network, "bob", BOB, options.bob ? { config: options.bob } : {})
    yield* meet(alice, bob, BOB)
    yield* meet(bob, alice, ALICE)
    return { network, alice, bob }
  })

const sendError = (effect: Effect.Effect<SendResult, SendError>) =>
  Effect.flip(effect).pipe(Effect.timeout("3 seconds"), Effect.orDie)

/** A listener at `address` that reads every frame into `frames` and never answers. */
const silentResponder = (network: MemoryTransport.MemoryNetwork, address: string) =>
  Effect.gen(function*() {
    const frames: Array<Frame> = []
    const connections = { count: 0 }
    const transport = yield* Effect.gen(function*() {
      return yield* Transport
    }).pipe(Effect.provide(MemoryTransport.layer(network, address)))
    yield* transport.serve({ host: address, port: PORT }, (c) =>
      Effect.gen(function*() {
        connections.count++
        const ch = yield* c.open(64 * 1024)
        for (;;) frames.push(yield* ch.next)
      }).pipe(Effect.catch(() => Effect.void)))
    return { frames, connections }
  })

// ---------------------------------------------------------------------------------------------

describe("chat roles over the memory transport", () => {
  it.live("a secure send is delivered, and stored once on both sides", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* twoNodes()
      const result = yield* alice.initiator.send("bob", "hello bob")
      assert.strictEqual(result.mode, "noise")
      assert.strictEqual(result.state, "delivered")
      assert.strictEqual(result.peer, "bob")

      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob noise delivered hello bob"])
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice noise received hello bob"])
      assert.strictEqual((yield* conversation(bob))[0]!.id, result.id)
      yield* waitUntilEffect("bob shows the message", Effect.sync(() => messageEvents(bob.events).length === 1))
      assert.deepStrictEqual(messageEvents(bob.events), ["alice: hello bob (noise)"])

      const b = yield* bob.stats
      assert.strictEqual(b.received, 1)
      assert.strictEqual(b.duplicates, 0)
      assert.strictEqual(b.sessionsIn, 1)
      assert.strictEqual(b.accepted, 1)
      assert.strictEqual((yield* alice.stats).delivered, 1)
    }))

  it.live("plain to a p2pchat peer: delivered, filed under the sender's name", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* twoNodes()
      const result = yield* alice.initiator.send("bob", "in the clear", "plain")
      assert.strictEqual(result.mode, "plain")
      assert.strictEqual(result.state, "delivered")
      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob plain delivered in the clear"])
      // bob knows alice at ALICE, where the connection came from: the `from` is believed.
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received in the clear"])
      assert.strictEqual((yield* bob.stats).sessionsIn, 0)
    }))

  it.live("plain is the default to a p2pchat peer that announces no key", () =>
    Effect.gen(function*() {
      const network = MemoryTransport.makeNetwork()
      const alice = yield* startNode(network, "alice", ALICE)
      const bob = yield* startNode(network, "bob", BOB)
      yield* meet(alice, bob, BOB, false)
      const result = yield* alice.initiator.send("bob", "no key, no secrets")
      assert.strictEqual(result.mode, "plain")
      assert.strictEqual(result.state, "delivered")
      // bob has not heard of alice: a `from` the registry does not know is believed.
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received no key, no secrets"])
    }))

  it.live("classic-3des to a p2pchat peer: delivered with an ack, with the warning", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* twoNodes()
      const result = yield* alice.initiator.send("bob", "weakly hidden", "classic-3des")
      assert.strictEqual(result.mode, "classic-3des")
      assert.strictEqual(result.state, "delivered")
      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob classic-3des delivered weakly hidden"])
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice classic-3des received weakly hidden"])
      assert.isTrue(alice.events.some((e) => e.event === "warning" && /NOT secure/.test(e.message)))
    }))

  it.live("concurrent sends are pipelined on one link, and each gets its own ack", () =>
    Effect.gen(function*() {
      const { alice, bob } = yield* twoNodes()
      const texts = Array.from({ length: 12 }, (_, i) => `message ${i}`)
      const results = yield* Effect.forEach(texts, (t) => alice.initiator.send("bob", t), { concurrency: "unbounded" })
      assert.deepStrictEqual(results.map((r) => r.state), texts.map(() => "delivered"))
      assert.strictEqual(new Set(results.map((r) => r.id)).size, texts.length)

      // One connection, one handshake, for all of them.
      const b = yield* bob.stats
      assert.strictEqual(b.accepted, 1)
      assert.strictEqual(b.sessionsIn, 1)
      assert.strictEqual(b.received, texts.length)

      const got = yield* conversation(bob)
      assert.deepStrictEqual([...got.map((e) => e.id)].sort(), [...results.map((r) => r.id)].sort())
      assert.deepStrictEqual([...got.map((e) => e.text)].sort(), [...texts].sort())
      const sent = yield* conversation(alice)
      assert.isTrue(sent.every((e) => e.state === "delivered"))
      assert.strictEqual(sent.length, texts.length)
    }))

  describe("failure paths", () => {
    it.live("a peer that hangs up mid-frame: counted as ClosedMidFrame, nothing stored", () =>
      Effect.gen(function*() {
        const { network, bob } = yield* twoNodes()
        const raw = yield* network.connectRaw(BOB, PORT, ALICE)
        const frame = JSON.stringify({ unencrypted_message: Buffer.from("cut short").toString("base64"), id: "half-1" })
        yield* raw.write(frame.slice(0, Math.floor(frame.length / 2)))
        yield* raw.close
        yield* waitUntilEffect(
          "bob counts the connection as rejected",
          Effect.map(bob.stats, (s) => s.rejectedByReason["ClosedMidFrame"] === 1)
        )
        const s = yield* bob.stats
        assert.strictEqual(s.rejected, 1)
        assert.strictEqual(s.received, 0)
        assert.deepStrictEqual(yield* conversation(bob), [])
        assert.deepStrictEqual(messageEvents(bob.events), [])
        // The whole frame would have been stored: the half is what made the difference.
        const again = yield* network.connectRaw(BOB, PORT, ALICE)
        yield* again.write(frame + "\n")
        yield* waitUntilEffect("bob stores the complete frame", Effect.map(bob.stats, (st) => st.received === 1))
        assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received cut short"])
      }))

    it.live("no ack: the send fails with Timeout and stays pending; a retry to the real bob delivers it once", () =>
      Effect.gen(function*() {
        const network = MemoryTransport.makeNetwork()
        const alice = yield* startNode(network, "alice", ALICE, { tuning: { ...TUNING, ackTimeoutMs: 300 } })
        const bob = yield* startNode(network, "bob", BOB)
        const fake = yield* silentResponder(network, FAKE)
        // alice hears bob at the fake's address first.
        yield* meet(alice, bob, FAKE)
        yield* meet(bob, alice, ALICE)

        const started = Date.now()
        const e = yield* sendError(alice.initiator.send("bob", "are you there?", "plain"))
        assert.strictEqual(e.reason, "Timeout")
        assert.isAtLeast(Date.now() - started, 290)
        // The fake got the frame, with the id the message keeps.
        assert.strictEqual(fake.frames.length, 1)
        const seen = fake.frames[0]!
        assert.strictEqual(seen._tag, "Plain")
        const id = (seen as Extract<Frame, { _tag: "Plain" }>).frame.id
        assert.isString(id)
        assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob plain pending are you there?"])
        assert.deepStrictEqual((yield* alice.history.pendingFor("bob").pipe(Effect.orDie)).map((p) => p.id), [id])

        // bob is heard at its real address: the pending message goes again, with its id.
        yield* meet(alice, bob, BOB)
        yield* waitUntilEffect(
          "alice marks the message delivered",
          Effect.map(conversation(alice), (c) => c.length === 1 && c[0]!.state === "delivered")
        )
        const got = yield* conversation(bob)
        assert.deepStrictEqual(got.map((g) => [g.id, g.text, g.peer]), [[id!, "are you there?", "alice"]])
        // An explicit retry finds nothing left to send, and bob stores nothing twice.
        assert.strictEqual(yield* alice.initiator.retryPending("bob"), 0)
        const s = yield* bob.stats
        assert.strictEqual(s.received, 1)
        assert.strictEqual(s.duplicates, 0)
        assert.strictEqual(fake.frames.length, 1)
        assert.strictEqual(fake.connections.count, 1)
      }))

    it.live("a message id sent twice is acked twice and stored once", () =>
      Effect.gen(function*() {
        const { network, bob } = yield* twoNodes()
        const raw = yield* network.connectRaw(BOB, PORT, ALICE)
        const frame = JSON.stringify({ unencrypted_message: Buffer.from("once only").toString("base64"), id: "dup-1", from: "alice" })
        for (let i = 0; i < 2; i++) {
          yield* raw.write(frame + "\n")
          const answer = yield* raw.read.pipe(Effect.timeout("2 seconds"), Effect.orDie)
          assert.deepStrictEqual(answer.map(String), ['{"ack":"dup-1"}\n'])
        }
        const s = yield* bob.stats
        assert.strictEqual(s.received, 1)
        assert.strictEqual(s.duplicates, 1)
        assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received once only"])
      }))

    it.live("a dial to an address where nothing listens: Unreachable, and the message stays pending", () =>
      Effect.gen(function*() {
        const network = MemoryTransport.makeNetwork()
        const alice = yield* startNode(network, "alice", ALICE)
        const bob = yield* startNode(network, "bob", BOB)
        yield* meet(alice, bob, NOBODY)
        for (const mode of ["noise", "plain"] as const) {
          const e = yield* sendError(alice.initiator.send("bob", `to nowhere (${mode})`, mode))
          assert.strictEqual(e.reason, "Unreachable")
          assert.match(e.message, /cannot reach bob/)
        }
        assert.deepStrictEqual(summary(yield* conversation(alice)), [
          "sent bob noise pending to nowhere (noise)",
          "sent bob plain pending to nowhere (plain)"
        ])
        assert.strictEqual((yield* alice.stats).sendFailures, 2)
        assert.strictEqual((yield* bob.stats).accepted, 0)
      }))

    it.live("the responder's first-frame limit closes a silent connection", () =>
      Effect.gen(function*() {
        const { network, bob } = yield* twoNodes({ bob: { firstFrameTimeoutMs: 150 } })
        const raw = yield* network.connectRaw(BOB, PORT, ALICE)
        const started = Date.now()
        // Nothing is written; bob hangs up once the limit bites.
        const end = yield* Effect.flip(raw.read).pipe(Effect.timeout("2 seconds"), Effect.orDie)
        const waited = Date.now() - started
        assert.strictEqual(end.reason, "Closed")
        assert.isAtLeast(waited, 140)
        assert.isBelow(waited, 1500)
        const s = yield* bob.stats
        assert.strictEqual(s.limits.firstFrameTimeout, 1)
        assert.strictEqual(s.accepted, 1)
        yield* waitUntilEffect("the connection is released", Effect.map(bob.stats, (st) => st.active === 0))
        assert.strictEqual(s.rejected, 0)
      }))
  })
})
