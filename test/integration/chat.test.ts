/**
 * Chat end to end, in-process: nodes built from the role layers with testConfig (bind
 * 127.0.0.1, OS-chosen ports), real TCP sockets on loopback, temp data dirs. Classic peers
 * are simulated with node:net. Peers are put into a node's registry directly (as Discovery
 * would), always at 127.0.0.1, without an `id`, so the default mode to them is plain (the
 * secure sessions have their own file, secure.test.ts). Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import * as net from "node:net"
import { CLASSIC_WARNING, classicDecrypt, classicEncrypt, classicKey24, classicShared } from "../../src/domain/Classic.ts"
import { baseLayer, chatSide, clientRole, receiving, respondRole, sending, storeOf } from "../../src/layers/Node.ts"
import { type NodeConfig, testConfig } from "../../src/services/Config.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import type { UiEvent } from "../../src/services/Events.ts"
import * as History from "../../src/services/History.ts"
import { Initiator } from "../../src/chat/Initiator.ts"
import { SendError } from "../../src/chat/SendError.ts"
import { CLASSIC_FRAME_LIMIT } from "../../src/domain/Classic.ts"
import * as PeerRegistry from "../../src/services/PeerRegistry.ts"
import { Responder } from "../../src/chat/Responder.ts"
import {
  buildOwned,
  captureLog,
  conversation,
  freeTcpPort,
  LOOPBACK,
  messageEvents,
  polls,
  sleep,
  startNode as startTestNode,
  summary,
  tcpServer,
  tempDir,
  withTuning
} from "../support/node.ts"

/** Short timers so that failures show quickly; the classic pause stays the protocol's 100 ms. */
const TUNING = { ackTimeoutMs: 400, connectTimeoutMs: 1000, classicPauseMs: 100 }

const { waitUntil, waitUntilEffect } = polls(3000)

/** A whole node (`p2pchat start` without the console) on `dataDir`. */
const startNode = (name: string, dataDir: string, config: Partial<NodeConfig> = {}) =>
  startTestNode(name, { dataDir, config, tuning: TUNING })

/** Only an initiator with its own history and registry: a light sender. */
const startSender = (name: string, dataDir: string, tuning: typeof TUNING = TUNING) =>
  Effect.gen(function*() {
    const config = testConfig({ name, dataDir })
    const layer = chatSide(sending).pipe(
      Layer.provideMerge(PeerRegistry.layer),
      Layer.provideMerge(Crypto.layer),
      Layer.provideMerge(History.layer),
      Layer.provideMerge(storeOf(config)),
      Layer.provideMerge(baseLayer(config))
    )
    const { ctx } = yield* buildOwned(withTuning(layer, tuning))
    return {
      registry: Context.get(ctx, PeerRegistry.PeerRegistry),
      history: Context.get(ctx, History.History),
      initiator: Context.get(ctx, Initiator)
    }
  })

/** Tells a registry that the p2pchat peer `username` is at 127.0.0.1:port (as Discovery would). */
const meet = (registry: PeerRegistry.PeerRegistry["Service"], username: string, port: number) =>
  registry.heard({ username, proto: "p2pchat/1", port }, LOOPBACK, 0)

/** A classic peer announces only its username; its TCP port is then 6001, so tests fake it. */
const meetClassic = (registry: PeerRegistry.PeerRegistry["Service"], username: string, port: number) =>
  // The registry takes the port from `port`; a real classic peer would not send it, but a
  // classic peer on loopback cannot use 6001 in a test. Without `proto` it stays classic.
  registry.heard({ username, port }, LOOPBACK, 0)

// ---------------------------------------------------------------------------------------------
// Raw TCP clients and servers (classic peers, misbehaving peers)

interface RawClient {
  readonly socket: net.Socket
  /** The client's own port: the responder logs it as the peer's. */
  readonly localPort: number
  readonly received: () => string
  readonly closed: () => boolean
  readonly write: (text: string) => Effect.Effect<void>
}

const rawClient = (port: number) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<RawClient>((resolve, reject) => {
        const chunks: Array<Buffer> = []
        let closed = false
        const socket = net.createConnection({ host: LOOPBACK, port, noDelay: true }, () =>
          resolve({
            socket,
            localPort: socket.localPort ?? 0,
            received: () => Buffer.concat(chunks).toString("utf8"),
            closed: () => closed,
            write: (text) => Effect.promise(() => new Promise<void>((done) => socket.write(text, () => done())))
          }))
        socket.on("data", (c) => chunks.push(c))
        socket.on("error", () => {})
        socket.on("close", () => void (closed = true))
        socket.once("error", reject)
      })
    ),
    (c) => Effect.sync(() => c.socket.destroy())
  )

/** Writes `text` in pieces cut at the given offsets, with a pause so they arrive apart. */
const writeSplit = (c: RawClient, text: string, cuts: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    let from = 0
    for (const cut of [...cuts, text.length]) {
      yield* c.write(text.slice(from, cut))
      from = cut
      yield* sleep(15)
    }
  })

/** Like Python's json.dumps(obj, indent=4). */
const pretty = (obj: object) => JSON.stringify(obj, null, 4)

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

// ---------------------------------------------------------------------------------------------

describe("chat between p2pchat nodes", () => {
  it.live("two nodes exchange plain and classic-encrypted messages both ways; histories and events show it", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("Alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice.registry, "bob", bob.port)
      yield* meet(bob.registry, "Alice", alice.port)

      const r1 = yield* alice.initiator.send("BOB", "hello bob, é ✓ 🎉")
      assert.deepStrictEqual({ ...r1, id: "" }, { id: "", peer: "bob", mode: "plain", state: "delivered" })
      const r2 = yield* bob.initiator.send("alice", "hi Alice", "plain")
      assert.strictEqual(r2.state, "delivered")
      const r3 = yield* alice.initiator.send("bob", "classic secret", "classic-3des")
      assert.deepStrictEqual([r3.mode, r3.state], ["classic-3des", "delivered"])
      const r4 = yield* bob.initiator.send("alice", "classic answer", "classic-3des")
      assert.deepStrictEqual([r4.mode, r4.state], ["classic-3des", "delivered"])

      assert.deepStrictEqual(summary(yield* conversation(alice, "bob")), [
        "sent bob plain delivered hello bob, é ✓ 🎉",
        "received bob plain received hi Alice",
        "sent bob classic-3des delivered classic secret",
        "received bob classic-3des received classic answer"
      ])
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [
        "received alice plain received hello bob, é ✓ 🎉",
        "sent alice plain delivered hi Alice",
        "received alice classic-3des received classic secret",
        "sent alice classic-3des delivered classic answer"
      ])
      // ids are the sender's, on both sides
      const bobIds = (yield* conversation(bob, "alice")).map((e) => e.id)
      assert.deepStrictEqual([bobIds[0], bobIds[2]], [r1.id, r3.id])

      yield* waitUntil("bob's message events", () => messageEvents(bob.events).length === 2)
      assert.deepStrictEqual(messageEvents(bob.events), [
        "Alice: hello bob, é ✓ 🎉 (plain)",
        "Alice: classic secret (classic-3des)"
      ])
      assert.deepStrictEqual(messageEvents(alice.events), ["bob: hi Alice (plain)", "bob: classic answer (classic-3des)"])
      const delivered = (events: ReadonlyArray<UiEvent>) =>
        events.flatMap((e) => (e.event === "delivered" ? [`${e.id} ${e.to}`] : []))
      assert.deepStrictEqual(delivered(alice.events), [`${r1.id} bob`, `${r3.id} bob`])
      assert.deepStrictEqual(delivered(bob.events), [`${r2.id} Alice`, `${r4.id} Alice`])
      // the classic cipher is announced as insecure whenever it is used
      assert.isTrue(alice.events.some((e) => e.event === "warning" && e.message === CLASSIC_WARNING))
      // one connection per (peer, dialect), reused: bob accepted plain + classic from alice only
      assert.strictEqual((yield* bob.responder.stats).accepted, 2)
    }))

  it.live("an unknown user, a secure send to a classic peer and a too long text fail with clear reasons, and nothing is stored", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const unknown = yield* Effect.flip(alice.initiator.send("bob", "anyone?"))
      assert.strictEqual(unknown.reason, "UnknownUser")
      assert.strictEqual(unknown.message, "no user 'bob' is online; 'users' lists who is")
      yield* meetClassic(alice.registry, "dave", yield* freeTcpPort)
      const secure = yield* Effect.flip(alice.initiator.send("dave", "psst", "noise"))
      assert.strictEqual(secure.reason, "Unsupported")
      assert.include(secure.message, "dave runs a classic chat program")
      assert.include(secure.message, "only classic")
      assert.include(secure.message, "NOT secure")
      assert.include(secure.message, "unsecure")
      yield* meet(alice.registry, "bob", yield* freeTcpPort)
      const tooLong = yield* Effect.flip(alice.initiator.send("bob", "x".repeat(50_000)))
      assert.strictEqual(tooLong.reason, "Refused")
      assert.include(tooLong.message, "too long")
      const tooLongSecure = yield* Effect.flip(alice.initiator.send("bob", "x".repeat(50_000), "noise"))
      assert.strictEqual(tooLongSecure.reason, "Refused")
      assert.include(tooLongSecure.message, "too long for one secure frame")
      assert.deepStrictEqual(yield* conversation(alice), [])
    }))

  it.live("history survives a restart: close the node, reopen its data dir", () =>
    Effect.gen(function*() {
      const aliceDir = yield* tempDir("alice")
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      const alice1 = yield* startNode("alice", aliceDir)
      yield* meet(alice1.registry, "bob", bob.port)
      yield* meet(bob.registry, "alice", alice1.port)
      yield* alice1.initiator.send("bob", "before restart 1")
      yield* bob.initiator.send("alice", "reply before restart")
      yield* alice1.initiator.send("bob", "before restart 2", "classic-3des")
      const before = yield* conversation(alice1)
      assert.strictEqual(before.length, 3)
      yield* alice1.close

      const alice2 = yield* startNode("alice", aliceDir)
      assert.deepStrictEqual(yield* conversation(alice2), before)
      yield* meet(alice2.registry, "bob", bob.port)
      yield* alice2.initiator.send("bob", "after restart")
      assert.deepStrictEqual(
        summary(yield* conversation(alice2)).at(-1),
        "sent bob plain delivered after restart"
      )
    }))
})

describe("client role (send/chat beside a running node)", () => {
  it.live("clientRole sends with the peers the running node saved, and records in the shared history", () =>
    Effect.gen(function*() {
      const aliceDir = yield* tempDir("alice")
      const alice = yield* startNode("alice", aliceDir)
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice.registry, "Bob", bob.port)

      const { ctx } = yield* buildOwned(withTuning(clientRole(testConfig({ name: "alice", dataDir: aliceDir })), TUNING))
      const registry = Context.get(ctx, PeerRegistry.PeerRegistry)
      // the node saves its registry within a quarter of a second
      yield* waitUntilEffect("bob in the snapshot", Effect.map(registry.lookup("bob"), Option.isSome))
      const peer = yield* registry.lookup("BOB")
      assert.deepStrictEqual(
        Option.getOrUndefined(Option.map(peer, (p) => `${p.username} ${p.address}:${p.port} ${p.proto}`)),
        `Bob ${LOOPBACK}:${bob.port} p2pchat/1`
      )
      const result = yield* Context.get(ctx, Initiator).send("bob", "from another process")
      assert.strictEqual(result.state, "delivered")
      // the running node's history is the same database
      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob plain delivered from another process"])
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received from another process"])
      const unknown = yield* Effect.flip(Context.get(ctx, Initiator).send("carol", "hi"))
      assert.strictEqual(unknown.reason, "UnknownUser")
    }))
  it.live("respondRole alone serves chats: stores, acks, and shows each message", () =>
    Effect.gen(function*() {
      const { ctx, events } = yield* buildOwned(respondRole(testConfig({ name: "bob", dataDir: yield* tempDir("bob") })))
      const client = yield* rawClient(Context.get(ctx, Responder).port)
      yield* client.write(JSON.stringify({ unencrypted_message: b64("hi responder"), id: "r-1", from: "Alice" }) + "\n")
      yield* waitUntil("ack", () => client.received() === `{"ack":"r-1"}\n`)
      yield* waitUntil("message event", () => messageEvents(events).length === 1)
      assert.deepStrictEqual(messageEvents(events), ["Alice: hi responder (plain)"])
      assert.deepStrictEqual(summary(yield* Effect.orDie(Context.get(ctx, History.History).conversation())), [
        "received alice plain received hi responder"
      ])
    }))
})

describe("responder with classic clients", () => {
  it.live("a classic client's pretty-printed, split frames without id are stored once, named by IP or registry, never acked; key exchange and 3DES work", () =>
    Effect.gen(function*() {
      const node = yield* startNode("bob", yield* tempDir("bob"))
      const client = yield* rawClient(node.port)
      const hello = pretty({ unencrypted_message: b64("hello from classic") })
      // cut inside the key, inside the base64 string and between whitespace
      yield* writeSplit(client, hello, [3, 17, 30, hello.length - 2])
      // a variant that sends the text itself, and two objects in one write
      yield* client.write(pretty({ unencrypted_message: "not base64 at all!" }) + pretty({ unencrypted_message: b64("second of two") }))

      const a = 7
      yield* writeSplit(client, pretty({ key: a }), [2, 9])
      yield* waitUntil("the key answer", () => client.received().length > 0)
      const answer = client.received()
      assert.match(answer, /^\{"key":\d+\}\n$/, "the key answer is one small compact frame")
      const b = (JSON.parse(answer) as { key: number }).key
      assert.isTrue(Number.isInteger(b) && b >= 0 && b <= 18)
      const key24 = classicKey24(classicShared(a, b))
      const secret = pretty({ encrypted_message: classicEncrypt(key24, "secret é ✓") })
      yield* writeSplit(client, secret, [25, 40])

      const unknown = "unknown (127.0.0.1)"
      yield* waitUntilEffect("4 stored messages", Effect.map(conversation(node, unknown), (c) => c.length === 4))
      assert.deepStrictEqual(summary(yield* conversation(node, unknown)), [
        `received ${unknown} plain received hello from classic`,
        `received ${unknown} plain received not base64 at all!`,
        `received ${unknown} plain received second of two`,
        `received ${unknown} classic-3des received secret é ✓`
      ])
      // ids were made up by the responder, each distinct
      assert.strictEqual(new Set((yield* conversation(node, unknown)).map((e) => e.id)).size, 4)
      yield* sleep(100)
      assert.strictEqual(client.received(), answer, "the responder wrote nothing but the key answer (no ack without id)")
      assert.isFalse(client.closed(), "the connection stays open: a classic initiator sends nothing more")

      // once the registry knows a classic peer at that address, its messages carry its name
      yield* meetClassic(node.registry, "Carol", 6001)
      yield* client.write(pretty({ unencrypted_message: b64("it is carol") }))
      yield* waitUntilEffect("carol's message", Effect.map(conversation(node, "carol"), (c) => c.length === 1))
      assert.deepStrictEqual(summary(yield* conversation(node, "carol")), ["received carol plain received it is carol"])
      yield* waitUntil("message events", () => messageEvents(node.events).length === 5)
      assert.deepStrictEqual(messageEvents(node.events), [
        `${unknown}: hello from classic (plain)`,
        `${unknown}: not base64 at all! (plain)`,
        `${unknown}: second of two (plain)`,
        `${unknown}: secret é ✓ (classic-3des)`,
        "Carol: it is carol (plain)"
      ])
    }))

  it.live("an encrypted_message before any key, or under the wrong key, ends that connection with a logged reason", () =>
    Effect.gen(function*() {
      const node = yield* startNode("bob", yield* tempDir("bob"))
      const noKey = yield* rawClient(node.port)
      yield* noKey.write(JSON.stringify({ encrypted_message: classicEncrypt(classicKey24(3), "x") }))
      yield* waitUntil("no-key connection closed", noKey.closed)

      const wrongKey = yield* rawClient(node.port)
      yield* wrongKey.write(JSON.stringify({ key: 1 }))
      yield* waitUntil("key answer", () => wrongKey.received().length > 0)
      const b = (JSON.parse(wrongKey.received()) as { key: number }).key
      const right = classicShared(1, b)
      const wrong = classicKey24((right + 1) % 19 === 4 || (right + 1) % 19 === 8 ? (right + 2) % 19 : (right + 1) % 19)
      yield* wrongKey.write(JSON.stringify({ encrypted_message: classicEncrypt(wrong, "hello there, this is long enough") }))
      yield* waitUntil("wrong-key connection closed", wrongKey.closed)
      const stats = yield* node.responder.stats
      assert.strictEqual(stats.rejectedByReason["NoKey"], 1)
      assert.strictEqual(stats.rejectedByReason["DecryptFailed"], 1)
      assert.deepStrictEqual(yield* conversation(node), [])
    }))

  it.live("our classic sends reach a classic responder one whole frame per 1024-byte read, 100 ms apart, a long text split in order", () =>
    Effect.gen(function*() {
      interface Read {
        readonly at: number
        readonly bytes: number
        readonly frame: Record<string, unknown> | undefined
      }
      const reads: Array<Read> = []
      const { port } = yield* tcpServer((socket) => {
        // The original responder: recv(1024), json.loads of exactly that, answer key 5.
        socket.on("readable", () => {
          let chunk: Buffer | null
          while ((chunk = socket.read() as Buffer | null) !== null) {
            for (let i = 0; i < chunk.length; i += 1024) {
              const piece = chunk.subarray(i, i + 1024)
              let frame: Record<string, unknown> | undefined
              try {
                frame = JSON.parse(piece.toString("utf8")) as Record<string, unknown>
              } catch {
                frame = undefined
              }
              reads.push({ at: Date.now(), bytes: chunk.length, frame })
              if (frame !== undefined && "key" in frame) socket.write(JSON.stringify({ key: 5 }))
            }
          }
        })
      })
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      yield* meetClassic(alice.registry, "dave", port)

      const plain = yield* alice.initiator.send("Dave", "plain hello", "plain")
      assert.deepStrictEqual([plain.mode, plain.state], ["plain", "sent"])
      const secret = yield* alice.initiator.send("dave", "default is classic 3DES")
      assert.deepStrictEqual([secret.mode, secret.state], ["classic-3des", "sent"])
      const long = Array.from({ length: 180 }, (_, i) => `${i}:é✓🎉`).join(" ") // ~2.3 kB of mixed UTF-8
      assert.isAbove(Buffer.byteLength(long), 2 * CLASSIC_FRAME_LIMIT)
      const longSent = yield* alice.initiator.send("dave", long, "classic-3des")
      assert.strictEqual(longSent.state, "sent")

      yield* sleep(150)
      for (const r of reads) {
        assert.isAtMost(r.bytes, CLASSIC_FRAME_LIMIT, "a frame of at most 1024 bytes")
        assert.isDefined(r.frame, "each read is exactly one whole JSON object")
        assert.notProperty(r.frame, "id")
        assert.notProperty(r.frame, "from")
      }
      // Frames leave 100 ms apart; arrival times here carry this process's event-loop jitter
      // (a late read shortens one gap), so: no two frames together, and 100 ms apart on average.
      for (let i = 1; i < reads.length; i++) {
        assert.isAtLeast(reads[i]!.at - reads[i - 1]!.at, 30, `frames ${i - 1} and ${i} are apart`)
      }
      const meanGap = (reads.at(-1)!.at - reads[0]!.at) / (reads.length - 1)
      assert.isAtLeast(meanGap, 90, "100 ms between frames on average")
      // decode what the classic responder got, with its key 5
      const texts: Array<string> = []
      let key24: Buffer | undefined
      for (const { frame } of reads) {
        if (frame === undefined) continue
        if ("key" in frame) key24 = classicKey24(classicShared(frame["key"] as number, 5))
        else if ("unencrypted_message" in frame) texts.push(Buffer.from(frame["unencrypted_message"] as string, "base64").toString("utf8"))
        else if ("encrypted_message" in frame) {
          assert.isDefined(key24, "a key exchange comes before each encrypted message")
          const r = classicDecrypt(key24!, frame["encrypted_message"] as string)
          assert.isTrue(r.ok)
          if (r.ok) texts.push(r.text)
          key24 = undefined
        }
      }
      assert.strictEqual(texts[0], "plain hello")
      assert.strictEqual(texts[1], "default is classic 3DES")
      assert.isAtLeast(texts.length - 2, 3, "the long text went as several messages")
      assert.strictEqual(texts.slice(2).join(""), long, "in order, cut on character boundaries")

      assert.deepStrictEqual(summary(yield* conversation(alice, "dave")), [
        "sent dave plain sent plain hello",
        "sent dave classic-3des sent default is classic 3DES",
        `sent dave classic-3des sent ${long}`
      ])
      assert.strictEqual(alice.events.filter((e) => e.event === "warning" && e.message === CLASSIC_WARNING).length, 2)
      // classic peers get no retries
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)
    }))
})

describe("responder under load and abuse", () => {
  it.live("ten initiators sending 20 messages each at once: each message stored exactly once, in order per sender", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      const senders = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => `sender${i}`),
        (name) =>
          Effect.gen(function*() {
            // what is checked is once and in order, not how fast: an ack held up by a slow
            // fsync (other suites write large files meanwhile) must not count as lost
            const s = yield* startSender(name, yield* tempDir(name), { ...TUNING, ackTimeoutMs: 10_000 })
            yield* meet(s.registry, "bob", bob.port)
            return { name, ...s }
          })
      )
      yield* Effect.forEach(
        senders,
        (s) =>
          Effect.forEach(Array.from({ length: 20 }, (_, i) => i), (i) =>
            s.initiator.send("bob", `${s.name} #${i}`, i % 5 === 4 ? "classic-3des" : "plain"), { discard: true }),
        { concurrency: "unbounded", discard: true }
      )
      for (const s of senders) {
        const received = yield* conversation(bob, s.name)
        assert.deepStrictEqual(
          received.map((e) => e.text),
          Array.from({ length: 20 }, (_, i) => `${s.name} #${i}`),
          `${s.name}: all 20, once each, in order`
        )
        const sent = yield* conversation(s)
        assert.isTrue(sent.every((e) => e.state === "delivered"))
        assert.deepStrictEqual(sent.map((e) => e.id), received.map((e) => e.id))
      }
      assert.strictEqual((yield* conversation(bob)).length, 200)
      const stats = yield* bob.responder.stats
      assert.deepStrictEqual([stats.received, stats.duplicates, stats.rejected], [200, 0, 0])
    }))

  it.live("garbage, an oversized frame, a bad schema and a half frame are each dropped with a logged reason; another client keeps chatting", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", yield* tempDir("bob"), { logLevel: "warning" })
      const good = yield* rawClient(bob.port)
      const say = (n: number) =>
        Effect.gen(function*() {
          yield* good.write(JSON.stringify({ unencrypted_message: b64(`good ${n}`), id: `good-${n}`, from: "Gus" }) + "\n")
          yield* waitUntil(`ack ${n}`, () => good.received().includes(`{"ack":"good-${n}"}\n`))
        })
      yield* say(1)

      const garbage = yield* rawClient(bob.port)
      yield* garbage.write("hello, is this JSON?\n")
      const huge = yield* rawClient(bob.port)
      const hugeFrame = JSON.stringify({ unencrypted_message: "A".repeat(70 * 1024) })
      yield* huge.write(hugeFrame)
      const badSchema = yield* rawClient(bob.port)
      yield* badSchema.write(JSON.stringify({ unencrypted_message: 42 }))
      const unknownFrame = yield* rawClient(bob.port)
      yield* unknownFrame.write(JSON.stringify({ hello: "there" }))
      yield* say(2)
      const half = yield* rawClient(bob.port)
      yield* half.write(`{"unencrypted_message": "${b64("never finished")}`)
      yield* sleep(30)
      half.socket.end()

      for (const [name, c] of [["garbage", garbage], ["huge", huge], ["badSchema", badSchema], ["unknown", unknownFrame], ["half", half]] as const) {
        yield* waitUntil(`${name} client dropped`, c.closed)
      }
      yield* say(3)
      yield* waitUntilEffect("rejections counted", Effect.map(bob.responder.stats, (s) => s.rejected === 5))
      const stats = yield* bob.responder.stats
      assert.deepStrictEqual(stats.rejectedByReason, { NotJson: 1, FrameTooLarge: 1, BadFrame: 2, ClosedMidFrame: 1 })

      const warnings = logged.filter((l) => l.includes("[warn]") && l.includes("dropped connection from 127.0.0.1:"))
      const reasonOf = (c: RawClient) => warnings.find((w) => w.includes(`127.0.0.1:${c.localPort}:`)) ?? "(none)"
      assert.match(reasonOf(garbage), /not JSON: expected '\{' at top level/)
      assert.match(reasonOf(huge), /frame larger than 65536 bytes/)
      assert.match(reasonOf(badSchema), /bad unencrypted_message frame/)
      assert.match(reasonOf(unknownFrame), /unknown frame with keys hello/)
      assert.match(reasonOf(half), /connection closed mid-frame/)

      // the good client was never disturbed, and new peers are still served
      assert.isFalse(good.closed())
      assert.deepStrictEqual(summary(yield* conversation(bob, "gus")).map((s) => s.split(" ").at(-1)), ["1", "2", "3"])
      const alice = yield* startSender("alice", yield* tempDir("alice"))
      yield* meet(alice.registry, "bob", bob.port)
      assert.strictEqual((yield* alice.initiator.send("bob", "still there?")).state, "delivered")
    }))

  it.live("the same id sent twice is stored once and acked both times", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      const client = yield* rawClient(bob.port)
      const frame = JSON.stringify({ unencrypted_message: b64("only once"), id: "dup-1", from: "zed" }) + "\n"
      yield* client.write(frame)
      yield* waitUntil("first ack", () => client.received() === `{"ack":"dup-1"}\n`)
      yield* client.write(frame)
      yield* waitUntil("second ack", () => client.received() === `{"ack":"dup-1"}\n{"ack":"dup-1"}\n`)
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received zed plain received only once"])
      yield* sleep(50)
      assert.deepStrictEqual(messageEvents(bob.events), ["zed: only once (plain)"])
      const stats = yield* bob.responder.stats
      assert.deepStrictEqual([stats.received, stats.duplicates], [1, 1])
    }))

  it.live("a plain frame claiming a known peer's name from another address is filed under its own address", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      // bob knows alice at 127.0.0.2; this client connects from 127.0.0.1 and says it is alice
      yield* bob.registry.heard({ username: "alice", proto: "p2pchat/1", port: 6001 }, "127.0.0.2", 0)
      const client = yield* rawClient(bob.port)
      yield* client.write(JSON.stringify({ unencrypted_message: b64("I am alice"), id: "f-1", from: "alice" }) + "\n")
      yield* waitUntil("ack", () => client.received() === `{"ack":"f-1"}\n`)
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received unknown (127.0.0.1) plain received I am alice"])
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [])
    }))

  it.live("a plain frame naming a pinned contact who is offline is filed under its address, not the contact's history", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      // bob pinned alice's key (a secure session long ago); alice is not in the registry now
      yield* Effect.orDie(bob.history.pinIfAbsent("alice", new Uint8Array(32).fill(7), new Date()))
      const client = yield* rawClient(bob.port)
      yield* client.write(JSON.stringify({ unencrypted_message: b64("it is me, alice"), id: "o-1", from: "alice" }) + "\n")
      yield* waitUntil("ack", () => client.received() === `{"ack":"o-1"}\n`)
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received unknown (127.0.0.1) plain received it is me, alice"])
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [])
      // a name with no pin, unknown to the registry, is still taken at its word (plain proves nothing either way)
      yield* client.write(JSON.stringify({ unencrypted_message: b64("hello"), id: "o-2", from: "zed" }) + "\n")
      yield* waitUntil("second ack", () => client.received().endsWith(`{"ack":"o-2"}\n`))
      assert.deepStrictEqual(summary(yield* conversation(bob, "zed")), ["received zed plain received hello"])
    }))

  it.live("a message that cannot be stored is not acked; the failure is logged and shown as an error event", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      // the disk "fails" for inserts only
      bob.store.db.exec(`CREATE TEMP TRIGGER fail_insert BEFORE INSERT ON main.messages
        BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`)
      const client = yield* rawClient(bob.port)
      yield* client.write(JSON.stringify({ unencrypted_message: b64("lost?"), id: "m-1", from: "zed" }) + "\n")
      yield* waitUntilEffect("storage failure counted", Effect.map(bob.responder.stats, (s) => s.storageFailures === 1))
      yield* waitUntil("error event", () => bob.events.some((e) => e.event === "error"))
      const error = bob.events.find((e) => e.event === "error")
      assert.include(error?.event === "error" ? error.message : "", "disk on fire")
      assert.deepStrictEqual(messageEvents(bob.events), [])
      yield* sleep(100)
      assert.strictEqual(client.received(), "", "no ack for a message that is not stored")

      // once the disk is back, the sender's retry (same id) is stored and acked
      bob.store.db.exec("DROP TRIGGER temp.fail_insert")
      yield* client.write(JSON.stringify({ unencrypted_message: b64("lost?"), id: "m-1", from: "zed" }) + "\n")
      yield* waitUntil("ack after repair", () => client.received() === `{"ack":"m-1"}\n`)
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received zed plain received lost?"])
    }))

  it.live("a second responder on a port in use fails with the port and --tcp-port in its error", () =>
    Effect.gen(function*() {
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      const config = testConfig({ name: "other", dataDir: yield* tempDir("other"), tcpPort: bob.port })
      const layer = chatSide(receiving).pipe(
        Layer.provideMerge(PeerRegistry.layer),
        Layer.provideMerge(Crypto.layer),
        Layer.provideMerge(History.layer),
        Layer.provideMerge(storeOf(config)),
        Layer.provideMerge(baseLayer(config))
      )
      const error = yield* Effect.flip(Effect.scoped(Layer.build(layer)))
      assert.strictEqual(error._tag, "ResponderError")
      assert.include(error.message, `TCP port ${bob.port} on 127.0.0.1`)
      assert.include(error.message, "already in use")
      assert.include(error.message, "--tcp-port")
    }))
})

describe("delivery: pending, timeout, retry", () => {
  it.live("no ack in time gives Timeout, a closed port gives Unreachable; both stay pending and are delivered exactly once later", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))

      // A relay that passes alice's frames to bob but swallows bob's acks (until told not to).
      let passAcks = false
      const relay = yield* tcpServer((inbound) => {
        const outbound = net.createConnection({ host: LOOPBACK, port: bob.port })
        outbound.on("error", () => inbound.destroy())
        inbound.on("data", (c) => outbound.write(c))
        outbound.on("data", (c) => {
          if (passAcks) inbound.write(c)
        })
        inbound.on("close", () => outbound.destroy())
        outbound.on("close", () => inbound.destroy())
      })
      yield* meet(alice.registry, "bob", relay.port)
      const timedOut = yield* Effect.flip(alice.initiator.send("bob", "are you there?"))
      assert.instanceOf(timedOut, SendError)
      assert.strictEqual(timedOut.reason, "Timeout")
      assert.include(timedOut.message, "bob")
      assert.include(timedOut.message, "pending")
      // bob got it (the ack was lost), alice keeps it pending
      yield* waitUntilEffect("bob stored it", Effect.map(conversation(bob), (c) => c.length === 1))
      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob plain pending are you there?"])

      // the ack path is repaired: an explicit retry resends the same id; bob keeps one copy
      passAcks = true
      assert.strictEqual(yield* alice.initiator.retryPending("bob"), 1)
      assert.deepStrictEqual(summary(yield* conversation(alice)), ["sent bob plain delivered are you there?"])
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice plain received are you there?"])
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)

      // a port nothing listens on
      const carolDir = yield* tempDir("carol")
      yield* meet(alice.registry, "carol", yield* freeTcpPort)
      const refused = yield* Effect.flip(alice.initiator.send("carol", "first try", "classic-3des"))
      assert.strictEqual(refused.reason, "Unreachable")
      assert.include(refused.message, "connection refused")
      const refused2 = yield* Effect.flip(alice.initiator.send("carol", "second try"))
      assert.strictEqual(refused2.reason, "Unreachable")
      assert.deepStrictEqual(summary(yield* conversation(alice, "carol")), [
        "sent carol classic-3des pending first try",
        "sent carol plain pending second try"
      ])

      // carol starts and announces from her port: the registry change triggers the retry
      const carol = yield* startNode("carol", carolDir)
      yield* meet(alice.registry, "carol", carol.port)
      yield* waitUntilEffect(
        "carol's messages delivered",
        Effect.map(conversation(alice, "carol"), (c) => c.every((e) => e.state === "delivered"))
      )
      assert.deepStrictEqual(summary(yield* conversation(carol)), [
        "received alice classic-3des received first try",
        "received alice plain received second try"
      ])
      const deliveredIds = alice.events.flatMap((e) => (e.event === "delivered" ? [e.id] : []))
      assert.strictEqual(deliveredIds.length, new Set(deliveredIds).size, "one delivered event per message")
      assert.strictEqual(deliveredIds.length, 3)
      yield* sleep(100)
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)
      assert.strictEqual((yield* carol.responder.stats).duplicates, 0)
    }))

  it.live("pipelined sends on one connection each get their own ack", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice.registry, "bob", bob.port)
      const results = yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) => alice.initiator.send("bob", `p${i}`),
        { concurrency: "unbounded" }
      )
      assert.isTrue(results.every((r) => r.state === "delivered"))
      assert.strictEqual((yield* conversation(bob)).length, 30)
      assert.strictEqual((yield* bob.responder.stats).accepted, 1, "one connection carried all 30")
      assert.isTrue(Option.isSome(yield* alice.registry.lookup("BOB")))
    }))
})
