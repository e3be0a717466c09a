/**
 * Secure sessions end to end, in-process: whole nodes built from the role layers with
 * testConfig (bind 127.0.0.1, OS-chosen ports), real TCP on loopback, temp data dirs. Peers
 * are put into a registry directly (as Discovery would), with their real `id`, except in the
 * delivery test, where presence runs over real UDP on loopback. Every wait is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option } from "effect"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import type { RefusalCode } from "../../src/domain/Frames.ts"
import { generateKeyPair } from "../../src/domain/Noise.ts"
import { respondRole } from "../../src/layers/Node.ts"
import { type NodeConfig, testConfig } from "../../src/services/Config.ts"
import { Crypto, IDENTITY_FILE, type Identity, fromIdentity, identityFromKeyPair, keyId } from "../../src/services/Crypto.ts"
import type { UiEvent } from "../../src/services/Events.ts"
import { Responder } from "../../src/chat/Responder.ts"
import { SendError } from "../../src/chat/SendError.ts"
import { type FrameIO, frameIO, type SecureChannel, type SessionError } from "../../src/dialects/noise/channel.ts"
import { initiate } from "../../src/dialects/noise/handshake.ts"
import * as NodeTransport from "../../src/transport/NodeTransport.ts"
import { Trust } from "../../src/trust/Trust.ts"
import {
  buildOwned,
  captureLog,
  conversation,
  freeTcpPort,
  freeUdpPort,
  LOOPBACK,
  meet,
  messageEvents,
  polls,
  sleep,
  startNode as startTestNode,
  summary,
  tcpServer,
  tempDir,
  type TestNode
} from "../support/node.ts"

const TUNING = { ackTimeoutMs: 500, connectTimeoutMs: 1000, classicPauseMs: 100, handshakeTimeoutMs: 1000 }

const { waitUntil, waitUntilEffect } = polls(3000)

/** A whole node (`p2pchat start` without the console) on `dataDir`. */
const startNode = (name: string, dataDir: string, config: Partial<NodeConfig> = {}) =>
  startTestNode(name, { dataDir, config, tuning: TUNING })

const eventsOf = (events: ReadonlyArray<UiEvent>, kind: "info" | "warning" | "error") =>
  events.flatMap((e) => (e.event === kind ? [e.message] : []))

/**
 * A TCP relay on loopback to `port`, owned by the test scope; `onData` decides what of each
 * chunk goes on (`up`: from the client to `port`).
 */
const tcpRelay = (port: number, onData: (up: boolean, chunk: Buffer) => Buffer | undefined) =>
  tcpServer((inbound) => {
    const outbound = net.createConnection({ host: LOOPBACK, port })
    for (const [from, to, up] of [[inbound, outbound, true], [outbound, inbound, false]] as const) {
      from.on("data", (c) => {
        const pass = onData(up, c)
        if (pass !== undefined) to.write(pass)
      })
      from.on("error", () => to.destroy())
      from.on("close", () => to.destroy())
    }
  })

// ---------------------------------------------------------------------------------------------
// A misbehaving secure client: a real handshake, then frames a test may rewrite

interface RawSession {
  readonly channel: SecureChannel
  readonly io: FrameIO
  /** Every frame the client wrote (after rewriting), in order. */
  readonly written: Array<object>
}

/**
 * Opens a secure session to 127.0.0.1:port as `username` with its own key. `rewrite(n, frame)`
 * gives the frames that really go out for write number n (1: handshake message 1, 2: message
 * 3, then one `ct` frame per send).
 */
const rawSecureClient = (
  port: number,
  username: string,
  identity: Identity,
  rewrite: (n: number, frame: object) => ReadonlyArray<object> = (_n, f) => [f]
) =>
  Effect.gen(function*() {
    const ch = yield* NodeTransport.make.dial(LOOPBACK, port, 1000)
    const io = frameIO(ch)
    const written: Array<object> = []
    let n = 0
    const hooked: FrameIO = {
      read: io.read,
      write: (frame) =>
        Effect.forEach(rewrite(++n, frame), (f) => Effect.andThen(Effect.sync(() => void written.push(f)), io.write(f)), {
          discard: true
        })
    }
    const channel = yield* initiate(hooked, username).pipe(Effect.provideService(Crypto, fromIdentity(identity)))
    const session: RawSession = { channel, io, written }
    return session
  })

const ctBytes = (frame: object): Buffer => Buffer.from((frame as { ct: string }).ct, "base64")
const ctFrame = (bytes: Uint8Array): object => ({ ct: Buffer.from(bytes).toString("base64") })

const msg = (id: string, text: string) => ({ type: "msg" as const, id, text, sentAt: new Date().toISOString() })

/** The next inner object from the responder, within 2 s. */
const receiveAck = (s: RawSession) =>
  s.channel.receive.pipe(
    Effect.timeoutOrElse({ duration: 2000, orElse: () => Effect.die(new Error("no answer from the responder within 2 s")) })
  )

/**
 * The responder hangs up: the next read fails within 2 s (a clean close, or a reset when the
 * responder closed with our next frame still unread).
 */
const expectHangUp = (s: RawSession) =>
  Effect.gen(function*() {
    const e: SessionError = yield* Effect.flip(s.io.read).pipe(
      Effect.timeoutOrElse({ duration: 2000, orElse: () => Effect.die(new Error("the responder kept the session open")) })
    )
    assert.include(["Closed", "Protocol"], e.reason, e.message)
  })

/** The responder says why it refuses (an error frame, nothing more), then hangs up. */
const expectRefusal = (s: RawSession, code: RefusalCode) =>
  Effect.gen(function*() {
    const frame = yield* s.io.read.pipe(
      Effect.timeoutOrElse({ duration: 2000, orElse: () => Effect.die(new Error("no error frame within 2 s")) })
    )
    assert.deepStrictEqual(frame, { _tag: "Error", frame: { error: code } })
    yield* expectHangUp(s)
  })

/** Sends what the responder will refuse; the write itself may already meet the hang-up. */
const sendBad = (s: RawSession, id: string, text: string) => Effect.ignore(s.channel.send(msg(id, text)))

// ---------------------------------------------------------------------------------------------

describe("secure sessions between p2pchat nodes", () => {
  it.live("a whole secure session both ways over loopback: noise on both sides, nothing readable on the wire, the same fingerprints", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("Alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))

      // alice reaches bob through a relay that records the bytes on the wire
      const wire = { up: [] as Array<Buffer>, down: [] as Array<Buffer> }
      const relay = yield* tcpRelay(bob.port, (up, c) => {
        ;(up ? wire.up : wire.down).push(c)
        return c
      })
      yield* meet(alice, bob, relay.port)
      yield* meet(bob, alice, alice.port)

      // secure is the default to a p2pchat peer that announces a key
      const r1 = yield* alice.initiator.send("BOB", "hello bob, é ✓ 🎉")
      assert.deepStrictEqual({ ...r1, id: "" }, { id: "", peer: "bob", mode: "noise", state: "delivered" })
      const r2 = yield* bob.initiator.send("alice", "hi Alice, all secret", "noise")
      assert.deepStrictEqual([r2.mode, r2.state], ["noise", "delivered"])
      const r3 = yield* alice.initiator.send("bob", "second on the same session", "noise")
      assert.strictEqual(r3.state, "delivered")

      assert.deepStrictEqual(summary(yield* conversation(alice, "bob")), [
        "sent bob noise delivered hello bob, é ✓ 🎉",
        "received bob noise received hi Alice, all secret",
        "sent bob noise delivered second on the same session"
      ])
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [
        "received alice noise received hello bob, é ✓ 🎉",
        "sent alice noise delivered hi Alice, all secret",
        "received alice noise received second on the same session"
      ])
      // ids are the sender's on both sides
      assert.deepStrictEqual(
        (yield* conversation(bob, "alice")).map((e) => e.id),
        [r1.id, r2.id, r3.id]
      )
      yield* waitUntil("bob's message events", () => messageEvents(bob.events).length === 2)
      assert.deepStrictEqual(messageEvents(bob.events), [
        "Alice: hello bob, é ✓ 🎉 (noise)",
        "Alice: second on the same session (noise)"
      ])
      yield* waitUntil("alice's message event", () => messageEvents(alice.events).length === 1)
      assert.deepStrictEqual(messageEvents(alice.events), ["bob: hi Alice, all secret (noise)"])

      // Each node shows the other's fingerprint as the other shows its own.
      const sessions = (events: ReadonlyArray<UiEvent>) => eventsOf(events, "info").filter((m) => m.startsWith("secure session"))
      assert.deepStrictEqual(sessions(alice.events), [
        `secure session to bob, fingerprint ${bob.fingerprint}`,
        `secure session from bob, fingerprint ${bob.fingerprint}`
      ])
      assert.deepStrictEqual(sessions(bob.events), [
        `secure session from Alice, fingerprint ${alice.fingerprint}`,
        `secure session to Alice, fingerprint ${alice.fingerprint}`
      ])
      // and pins them (trust on first use): what `verify` shows
      const pinOf = (node: TestNode, user: string) =>
        Effect.map(Effect.orDie(node.history.getPin(user)), (p) => Option.getOrUndefined(Option.map(p, (k) => Buffer.from(k).toString("base64url"))))
      assert.strictEqual(yield* pinOf(alice, "bob"), bob.id)
      assert.strictEqual(yield* pinOf(bob, "alice"), alice.id)
      assert.notStrictEqual(alice.fingerprint, bob.fingerprint)

      // one connection each way; on the wire only handshake and ciphertext frames
      assert.strictEqual((yield* bob.responder.stats).accepted, 1)
      assert.strictEqual((yield* alice.responder.stats).accepted, 1)
      const text = (chunks: Array<Buffer>) => Buffer.concat(chunks).toString("utf8")
      for (const bytes of [text(wire.up), text(wire.down)]) {
        for (const secret of ["hello bob", "second on the same", Buffer.from("hello bob").toString("base64"), "Alice", r1.id]) {
          assert.notInclude(bytes, secret, "nothing readable on the wire")
        }
      }
      const keys = (bytes: string) => bytes.split("\n").filter((l) => l !== "").map((l) => Object.keys(JSON.parse(l)).sort().join(","))
      assert.deepStrictEqual(keys(text(wire.up)), ["hs,proto", "hs", "ct", "ct"], "handshake 1 and 3, then two messages")
      assert.deepStrictEqual(keys(text(wire.down)), ["hs", "ct", "ct"], "handshake 2, then two acks")
    }))

  it.live("a third node with another key taking over bob's name and port is refused with both fingerprints; nothing reaches it until `trust bob`", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bobPort = yield* freeTcpPort
      const bob = yield* startNode("bob", yield* tempDir("bob"), { tcpPort: bobPort })
      yield* meet(alice, bob, bobPort)
      assert.strictEqual((yield* alice.initiator.send("bob", "first, to the real bob")).state, "delivered")

      // bob goes away; mallory starts with bob's name on bob's address and port, with her own key
      yield* bob.close
      const mallory = yield* startNode("bob", yield* tempDir("mallory"), { tcpPort: bobPort })
      assert.notStrictEqual(mallory.id, bob.id)

      // 1. alice's registry still holds bob's announced key: the node at that address proves another
      const moved = yield* Effect.flip(alice.initiator.send("bob", "are you bob?"))
      assert.instanceOf(moved, SendError)
      assert.strictEqual(moved.reason, "Refused")
      assert.include(moved.message, bob.fingerprint)
      assert.include(moved.message, mallory.fingerprint)

      // 2. bob says bye and mallory announces as bob with her key: the pinned key differs
      // (a signed bye, as Discovery passes it on once verified)
      assert.isTrue(yield* alice.registry.bye({ bye: "bob", id: bob.id }, LOOPBACK, true))
      yield* meet(alice, mallory, bobPort)
      const changed = yield* Effect.flip(alice.initiator.send("bob", "for bob's eyes only"))
      assert.strictEqual(changed.reason, "KeyChanged")
      assert.include(changed.message, `Pinned fingerprint:    ${bob.fingerprint}`)
      assert.include(changed.message, `Presented fingerprint: ${mallory.fingerprint}`)
      assert.include(changed.message, "`p2pchat trust bob FINGERPRINT`")
      assert.include(changed.message, "`trust bob FINGERPRINT`")
      assert.include(changed.message, "pending")

      // nothing reached mallory, who never even learnt who alice is; alice keeps both messages
      yield* sleep(50)
      assert.deepStrictEqual(yield* conversation(mallory), [])
      assert.deepStrictEqual(messageEvents(mallory.events), [])
      assert.deepStrictEqual(yield* Effect.orDie(mallory.history.pins()), [])
      assert.deepStrictEqual(summary(yield* conversation(alice, "bob")), [
        "sent bob noise delivered first, to the real bob",
        "sent bob noise pending are you bob?",
        "sent bob noise pending for bob's eyes only"
      ])
      // retries wait for the user's decision, and say so once
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)
      assert.strictEqual(yield* alice.initiator.retryPending("bob"), 0)
      const waiting = eventsOf(alice.events, "warning").filter((m) => m.includes("wait"))
      assert.strictEqual(waiting.length, 1)
      assert.include(waiting[0]!, mallory.fingerprint)
      assert.include(waiting[0]!, bob.fingerprint)
      assert.include(waiting[0]!, "trust bob")
      assert.deepStrictEqual(yield* conversation(mallory), [])

      // the refused session left the key it proved for `trust bob` to accept
      const presented = yield* Effect.orDie(alice.history.presentedKey("bob"))
      assert.isTrue(Option.isSome(presented) && keyId(presented.value) === mallory.id)
      // the user compared fingerprints and accepts the new key: `trust bob FINGERPRINT`
      const trusted = yield* Effect.orDie(Effect.flatMap(Effect.service(Trust), (t) => t.trustPeer("bob", mallory.fingerprint)))
        .pipe(Effect.provideContext(alice.context))
      assert.strictEqual(trusted, mallory.fingerprint)
      assert.isTrue(Option.isNone(yield* Effect.orDie(alice.history.presentedKey("bob"))))
      const after = yield* alice.initiator.send("bob", "after trust")
      assert.deepStrictEqual([after.mode, after.state], ["noise", "delivered"])
      // the new session sends what waited, once each
      yield* waitUntilEffect(
        "pending messages delivered",
        Effect.map(conversation(alice, "bob"), (c) => c.every((e) => e.state === "delivered"))
      )
      const got = (yield* conversation(mallory, "alice")).map((e) => e.text).sort()
      assert.deepStrictEqual(got, ["after trust", "are you bob?", "for bob's eyes only"])
      assert.strictEqual((yield* mallory.responder.stats).duplicates, 0)
    }))

  it.live("a stranger claiming a known peer's name with another key is refused before anything is pinned; the real peer is then accepted", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", yield* tempDir("bob"), { logLevel: "warning" })
      const alice = yield* startNode("alice", yield* tempDir("alice"), { logLevel: "warning" })
      // bob knows alice's announced key, but has never had a secure session with her.
      yield* meet(bob, alice, alice.port)
      const mallet = yield* identityFromKeyPair(generateKeyPair())
      // Its message 3 completes its side of the handshake; bob hangs up before any message.
      yield* rawSecureClient(bob.port, "alice", mallet).pipe(
        Effect.flatMap((s) => Effect.andThen(s.channel.send(msg("m-1", "I am alice")), expectHangUp(s))),
        Effect.ignore
      )
      yield* Effect.sleep("100 millis")
      assert.isTrue(Option.isNone(yield* bob.history.getPin("alice")), "nothing pinned for alice")
      assert.deepStrictEqual(summary(yield* conversation(bob, "alice")), [])
      assert.isTrue(logged.some((l) => /announces the key with fingerprint .* but this node proved/.test(l)), "the refusal is logged")
      // The real alice, whose key is the announced one, is accepted and pinned.
      yield* meet(alice, bob, bob.port)
      assert.strictEqual((yield* alice.initiator.send("bob", "the real alice")).state, "delivered")
      const pin = yield* bob.history.getPin("alice")
      assert.isTrue(Option.isSome(pin) && keyId(pin.value) === alice.id)
    }))

  it.live("tampered, replayed, reordered and truncated ciphertext each end that session with a warning; nothing from them is stored or shown; others keep chatting", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      const bob = yield* startNode("bob", yield* tempDir("bob"), { logLevel: "warning" })
      const alice = yield* startNode("alice", yield* tempDir("alice"), { logLevel: "warning" })
      yield* meet(alice, bob, bob.port)
      assert.strictEqual((yield* alice.initiator.send("bob", "before the attacks")).state, "delivered")

      const flipBit = (frame: object) => {
        const b = ctBytes(frame)
        b[5] = b[5]! ^ 0x01
        return ctFrame(b)
      }

      // tampered: one bit of the second ciphertext flipped
      const mallet = yield* identityFromKeyPair(generateKeyPair())
      const tampered = yield* rawSecureClient(bob.port, "mallet", mallet, (n, f) => (n === 4 ? [flipBit(f)] : [f]))
      yield* tampered.channel.send(msg("t-ok", "tampered session, good frame"))
      assert.deepStrictEqual(yield* receiveAck(tampered), { type: "ack", id: "t-ok" })
      yield* sendBad(tampered, "t-bad", "TAMPERED")
      yield* expectHangUp(tampered)

      // replayed: the first ciphertext sent again, byte for byte
      const replayed = yield* rawSecureClient(bob.port, "mallet", mallet)
      yield* replayed.channel.send(msg("r-ok", "replayed session, good frame"))
      assert.deepStrictEqual(yield* receiveAck(replayed), { type: "ack", id: "r-ok" })
      yield* replayed.io.write(replayed.written[2]!)
      yield* expectHangUp(replayed)

      // reordered: the second ciphertext goes before the first
      let held: object | undefined
      const reordered = yield* rawSecureClient(bob.port, "mallet", mallet, (n, f) => {
        if (n === 3) {
          held = f
          return []
        }
        return n === 4 ? [f, held!] : [f]
      })
      yield* reordered.channel.send(msg("o-1", "REORDERED 1"))
      yield* sendBad(reordered, "o-2", "REORDERED 2")
      yield* expectHangUp(reordered)

      // truncated: the last bytes of the tag cut off
      const truncated = yield* rawSecureClient(bob.port, "mallet", mallet, (n, f) => (n === 4 ? [ctFrame(ctBytes(f).subarray(0, -4))] : [f]))
      yield* truncated.channel.send(msg("c-ok", "truncated session, good frame"))
      assert.deepStrictEqual(yield* receiveAck(truncated), { type: "ack", id: "c-ok" })
      yield* sendBad(truncated, "c-bad", "TRUNCATED")
      yield* expectHangUp(truncated)

      // only the good frames were stored and shown, once each
      assert.deepStrictEqual(summary(yield* conversation(bob, "mallet")), [
        "received mallet noise received tampered session, good frame",
        "received mallet noise received replayed session, good frame",
        "received mallet noise received truncated session, good frame"
      ])
      yield* waitUntilEffect("rejections counted", Effect.map(bob.responder.stats, (s) => s.rejected === 4))
      const stats = yield* bob.responder.stats
      assert.deepStrictEqual(stats.rejectedByReason, { DecryptFailed: 4 })
      assert.deepStrictEqual([stats.received, stats.duplicates], [4, 0])
      const shown = messageEvents(bob.events).join("\n")
      for (const bad of ["TAMPERED", "REORDERED", "TRUNCATED"]) assert.notInclude(shown, bad)

      // a clear warning for each, in the log and to the user
      const warnings = logged.filter((l) => l.includes("[warn]") && l.includes("failed to decrypt"))
      assert.strictEqual(warnings.length, 4, warnings.join(""))
      for (const w of warnings) assert.include(w, "secure session with mallet ended")
      yield* waitUntil("warning events", () => eventsOf(bob.events, "warning").length === 4)
      assert.strictEqual(eventsOf(bob.events, "warning").length, 4)
      assert.isTrue(eventsOf(bob.events, "warning").every((m) => m.includes("altered, replayed, reordered or truncated")))

      // another key claiming the name mallet pinned: refused once the handshake proves it, with both fingerprints
      const other = yield* identityFromKeyPair(generateKeyPair())
      const impostor = yield* rawSecureClient(bob.port, "Mallet", other)
      yield* sendBad(impostor, "k-1", "IMPOSTOR")
      yield* expectRefusal(impostor, "key-changed")
      yield* waitUntil("the key-change warning", () => eventsOf(bob.events, "warning").some((m) => m.includes("CHANGED")))
      const keyChanged = eventsOf(bob.events, "warning").find((m) => m.includes("CHANGED"))!
      assert.include(keyChanged, `Pinned fingerprint:    ${mallet.fingerprint}`)
      assert.include(keyChanged, `Presented fingerprint: ${other.fingerprint}`)
      assert.include(keyChanged, "`trust Mallet FINGERPRINT`")
      assert.isTrue(logged.some((l) => l.includes("[warn]") && l.includes("CHANGED") && l.includes(other.fingerprint)))
      assert.notInclude(messageEvents(bob.events).join("\n"), "IMPOSTOR")
      assert.strictEqual((yield* conversation(bob, "mallet")).length, 3)
      assert.strictEqual((yield* bob.responder.stats).rejectedByReason["KeyChanged"], 1)

      // alice's session was never disturbed, and bob still serves her on it
      assert.strictEqual((yield* alice.initiator.send("bob", "after the attacks")).state, "delivered")
      assert.deepStrictEqual((yield* conversation(bob, "alice")).map((e) => e.text), [
        "before the attacks",
        "after the attacks"
      ])
      assert.strictEqual((yield* bob.responder.stats).accepted, 6, "alice's one connection plus the five attackers")
    }))

  it.live("a node without a username refuses secure sessions with a clear log line", () =>
    Effect.gen(function*() {
      const logged = yield* captureLog
      // `p2pchat respond` may run without a name (a whole node asks for one before it announces)
      const { ctx } = yield* buildOwned(
        respondRole(testConfig({ name: undefined, dataDir: yield* tempDir("anon"), logLevel: "warning" }))
      )
      const port = Context.get(ctx, Responder).port
      const e = yield* Effect.flip(rawSecureClient(port, "mallet", yield* identityFromKeyPair(generateKeyPair())))
      assert.strictEqual(e._tag, "SessionError")
      yield* waitUntil("the log line", () => logged.some((l) => l.includes("no username")))
      assert.include(logged.find((l) => l.includes("no username"))!, "--name")
    }))
})

describe("trust what you compared", () => {
  it.live("bob's key changes: alice refuses him and says why, tells her user once, and pins only the fingerprint she compared", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bobPort = yield* freeTcpPort
      const oldBob = yield* startNode("bob", yield* tempDir("bob"), { tcpPort: bobPort })
      yield* meet(alice, oldBob, bobPort)
      yield* meet(oldBob, alice)
      assert.strictEqual((yield* alice.initiator.send("bob", "hello bob")).state, "delivered")
      assert.strictEqual((yield* oldBob.initiator.send("alice", "hello alice")).state, "delivered")

      // bob's key changes: a new identity on his port, announcing it
      yield* oldBob.close
      assert.isTrue(yield* alice.registry.bye({ bye: "bob", id: oldBob.id }, LOOPBACK, true))
      const bob = yield* startNode("bob", yield* tempDir("bob-new"), { tcpPort: bobPort })
      yield* meet(alice, bob, bobPort)
      yield* meet(bob, alice)

      // alice's send is refused: bob proves a key other than the one she pinned
      const refused = yield* Effect.flip(alice.initiator.send("bob", "still you?"))
      assert.strictEqual(refused.reason, "KeyChanged")

      // bob writes to alice: she refuses the session, and says why; bob's SendError gives the reason
      const rejected = yield* Effect.flip(bob.initiator.send("alice", "it is me, new key"))
      assert.strictEqual(rejected.reason, "KeyRejected")
      assert.include(rejected.message, "alice has pinned another key for you: compare fingerprints")
      // bob retries; alice's user hears of it once, her log and stats count every refusal
      for (let i = 0; i < 3; i++) assert.strictEqual(yield* bob.initiator.retryPending("alice"), 0)
      yield* waitUntilEffect("every refusal counted", Effect.map(alice.responder.stats, (st) => (st.rejectedByReason["KeyChanged"] ?? 0) >= 4))
      const told = eventsOf(alice.events, "warning").filter((m) => m.startsWith("secure session from") && m.includes("CHANGED"))
      assert.strictEqual(told.length, 1, told.join("\n"))
      assert.include(told[0]!, bob.fingerprint)
      assert.deepStrictEqual(yield* conversation(alice, "bob").pipe(Effect.map((c) => c.filter((e) => e.direction === "received").map((e) => e.text))), ["hello alice"])

      const t = Context.get(alice.context, Trust)
      // `trust bob` with a fingerprint bob never proved pins nothing
      const wrong = yield* Effect.flip(t.trustPeer("bob", alice.fingerprint))
      assert.strictEqual(wrong.reason, "NoMatch")
      const pinned = yield* Effect.orDie(alice.history.getPin("bob"))
      assert.isTrue(Option.isSome(pinned) && keyId(pinned.value) === oldBob.id)

      // `trust bob` with the first 20 digits of the presented fingerprint pins bob's new key
      assert.strictEqual(yield* Effect.orDie(t.trustPeer("bob", bob.fingerprint.slice(0, 23))), bob.fingerprint)
      const now = yield* Effect.orDie(alice.history.getPin("bob"))
      assert.isTrue(Option.isSome(now) && keyId(now.value) === bob.id)
      // the pending messages go, both ways
      assert.strictEqual(yield* alice.initiator.retryPending("bob"), 1)
      yield* bob.initiator.retryPending("alice")
      yield* waitUntilEffect("bob's pending message delivered", Effect.map(conversation(alice, "bob"), (c) => c.some((e) => e.text === "it is me, new key")))
      assert.deepStrictEqual((yield* conversation(bob, "alice")).filter((e) => e.direction === "received").map((e) => e.text), ["still you?"])
    }))
})

describe("a pinned name is secure only", () => {
  it.live("a pinned name announced with no key or another key is shown at once, once per key and address; a message to it waits", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice, bob)
      assert.strictEqual((yield* alice.initiator.send("bob", "hello bob")).state, "delivered")
      const warned = () => eventsOf(alice.events, "warning").filter((m) => m.startsWith("bob is announced from"))
      assert.deepStrictEqual(warned(), [])

      // bob leaves (signed bye); someone announces bob with no key, twice, unsigned
      assert.isTrue(yield* alice.registry.bye({ bye: "bob", id: bob.id }, LOOPBACK, true))
      const impostorPort = yield* freeTcpPort
      for (let i = 0; i < 2; i++) yield* alice.registry.heard({ username: "bob", proto: "p2pchat/1", port: impostorPort }, LOOPBACK, 0)
      yield* waitUntilEffect("told at once", Effect.sync(() => warned().length === 1))
      assert.include(warned()[0]!, "with no key")
      assert.include(warned()[0]!, bob.fingerprint)

      // a message to bob, in the default mode, waits; nothing goes to that address
      const r = yield* alice.initiator.send("bob", "top secret")
      assert.strictEqual(r.state, "pending")
      assert.strictEqual(r.mode, "noise")
      assert.isTrue(eventsOf(alice.events, "warning").some((m) => m.includes("kept as pending")))
      assert.deepStrictEqual(summary(yield* conversation(alice, "bob")).slice(1), ["sent bob noise pending top secret"])

      // plain, asked for: a warning before it leaves (nobody listens there, so it fails)
      const before = alice.events.length
      yield* Effect.ignore(alice.initiator.send("bob", "not so secret", "plain"))
      const after = alice.events.slice(before).map((e) => JSON.stringify(e))
      assert.match(after[0] ?? "", /WITHOUT a secure session/)

      // the real bob is back: his signed announcement takes the name, the pending message goes
      yield* meet(alice, bob)
      yield* waitUntilEffect(
        "the pending secure message reaches the real bob",
        Effect.map(conversation(bob, "alice"), (c) => c.some((e) => e.text === "top secret"))
      )
    }))
})

describe("look-alike names", () => {
  it.live("a name that reads like a pinned or known one is shown at once, from presence and from a secure session, once each", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice, bob)
      assert.strictEqual((yield* alice.initiator.send("bob", "hello bob")).state, "delivered")
      const looks = () => eventsOf(alice.events, "warning").filter((m) => m.includes("looks like"))

      // "bоb" with a Cyrillic о starts and writes to alice: she is told it is not bob, once
      const impostor = yield* startNode("b\u043eb", yield* tempDir("impostor"))
      yield* meet(impostor, alice)
      for (let i = 0; i < 2; i++) assert.strictEqual((yield* impostor.initiator.send("alice", `it is bob ${i}`)).state, "delivered")
      yield* impostor.initiator.close()
      assert.strictEqual((yield* impostor.initiator.send("alice", "again")).state, "delivered")
      assert.strictEqual(looks().length, 1, looks().join("\n"))
      assert.include(looks()[0]!, "b\u043e(U+043E)b looks like bob")

      // a look-alike heard on the LAN is told too (once), and so is one of a known unpinned name
      yield* alice.registry.heard({ username: "B0B", proto: "p2pchat/1", port: 1 }, "127.0.0.9", 0)
      yield* alice.registry.heard({ username: "carol", proto: "p2pchat/1", port: 1 }, "127.0.0.10", 0)
      yield* alice.registry.heard({ username: "caro1", proto: "p2pchat/1", port: 1 }, "127.0.0.11", 0)
      yield* waitUntilEffect("told", Effect.sync(() => looks().length === 3))
      assert.include(looks()[1]!, "B0B looks like bob")
      assert.include(looks()[2]!, "caro1 looks like carol")
    }))
})

describe("a key pinned on first use is not verified until the user compares it", () => {
  it.live("secure messages are marked unverified (event, history) until `trust USER FINGERPRINT` with the pinned key's fingerprint", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      yield* meet(alice, bob)
      yield* meet(bob, alice)
      assert.strictEqual((yield* bob.initiator.send("alice", "first")).state, "delivered")
      const shown = () => alice.events.flatMap((e) => e.event === "message" ? [[e.text, e.verified]] : [])
      yield* waitUntilEffect("shown", Effect.sync(() => shown().length === 1))
      assert.deepStrictEqual(shown(), [["first", false]])
      assert.isFalse(yield* Effect.orDie(alice.history.isVerified("bob")))
      assert.deepStrictEqual((yield* Effect.orDie(alice.history.pins())).map((p) => [p.username, p.verified]), [["bob", false]])

      // alice compares bob's fingerprint and trusts the pinned key: verified from now on
      const t = Context.get(alice.context, Trust)
      assert.strictEqual(yield* Effect.orDie(t.trustPeer("bob", bob.fingerprint)), bob.fingerprint)
      assert.isTrue(yield* Effect.orDie(alice.history.isVerified("bob")))
      assert.strictEqual((yield* bob.initiator.send("alice", "second")).state, "delivered")
      yield* waitUntilEffect("shown", Effect.sync(() => shown().length === 2))
      assert.deepStrictEqual(shown()[1], ["second", true])
    }))
})

describe("secure delivery: pending, retry, expiry", () => {
  it.live("a message to a peer that is down stays pending, and is delivered exactly once when it comes back and announces (real UDP)", () =>
    Effect.gen(function*() {
      const timers = { announceEveryMs: 150, awayAfterMs: 500, expireAfterMs: 10_000 }
      const [bobUdp, bobTcp] = [yield* freeUdpPort, yield* freeTcpPort]
      const alice = yield* startNode("alice", yield* tempDir("alice"), {
        ...timers,
        tcpPort: yield* freeTcpPort,
        targets: [{ host: LOOPBACK, port: bobUdp }]
      })

      // bob's announcements reach alice through a relay the test can cut, as a network would
      let cut = false
      const relay = yield* Effect.acquireRelease(
        Effect.promise(() =>
          new Promise<dgram.Socket>((resolve) => {
            const s = dgram.createSocket("udp4")
            s.on("message", (m) => {
              if (!cut) s.send(m, alice.udpPort, LOOPBACK)
            })
            s.bind(0, LOOPBACK, () => resolve(s))
          })
        ),
        (s) => Effect.promise(() => new Promise<void>((done) => s.close(() => done())))
      )
      const bobDir = yield* tempDir("bob")
      const bobConfig = { ...timers, udpPort: bobUdp, tcpPort: bobTcp, targets: [{ host: LOOPBACK, port: relay.address().port }] }
      const bob1 = yield* startNode("bob", bobDir, bobConfig)

      const bobOnline = Effect.map(alice.registry.lookup("bob"), (p) => Option.isSome(p) && p.value.status === "online")
      yield* waitUntilEffect("alice hears bob", bobOnline)
      const heard = Option.getOrThrow(yield* alice.registry.lookup("bob"))
      assert.deepStrictEqual([heard.id, heard.port, heard.proto], [bob1.id, bobTcp, "p2pchat/1"])
      assert.strictEqual((yield* alice.initiator.send("bob", "while you are here")).state, "delivered")

      // bob is cut off (not even his bye gets through) and his node stops
      cut = true
      yield* bob1.close
      const down = yield* Effect.flip(alice.initiator.send("bob", "while you were away"))
      assert.strictEqual(down.reason, "Unreachable")
      assert.include(down.message, "kept and sent again when bob announces")
      const pending = (yield* conversation(alice, "bob")).at(-1)!
      assert.deepStrictEqual([pending.mode, pending.state], ["noise", "pending"])
      // an explicit retry while bob is down changes nothing
      assert.strictEqual(yield* alice.initiator.retryPending("bob"), 0)
      yield* waitUntilEffect(
        "alice sees bob away",
        Effect.map(alice.registry.lookup("bob"), (p) => Option.isSome(p) && p.value.status === "away")
      )

      // bob comes back on the same data dir and ports and announces: alice retries at once
      cut = false
      const bob2 = yield* startNode("bob", bobDir, bobConfig)
      assert.strictEqual(bob2.id, bob1.id, "the same identity from the same data dir")
      yield* waitUntilEffect(
        "the pending message delivered",
        Effect.map(conversation(alice, "bob"), (c) => c.every((e) => e.state === "delivered"))
      )
      const atBob = (yield* conversation(bob2, "alice")).filter((e) => e.id === pending.id)
      assert.deepStrictEqual(summary(atBob), ["received alice noise received while you were away"])
      yield* waitUntil("bob's message event", () => messageEvents(bob2.events).length === 1)
      assert.deepStrictEqual(messageEvents(bob2.events), ["alice: while you were away (noise)"])
      const delivered = alice.events.flatMap((e) => (e.event === "delivered" ? [e.id] : []))
      assert.deepStrictEqual(delivered.filter((id) => id === pending.id), [pending.id])

      // nothing is left to retry, and a retry would not show it twice anyway
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)
      yield* sleep(200)
      assert.strictEqual((yield* bob2.responder.stats).duplicates, 0)
      assert.strictEqual((yield* conversation(bob2, "alice")).filter((e) => e.id === pending.id).length, 1)
    }))

  it.live("a lost ack: the retry with the same id is stored once and acked again", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      // A relay that passes the handshake, then swallows everything bob sends (the acks).
      let fromBob = 0
      const relay = yield* tcpRelay(bob.port, (up, c) => {
        if (up) return c
        // bob's first frame is handshake message 2 (written alone); what follows are acks
        return fromBob++ === 0 ? c : undefined
      })
      yield* meet(alice, bob, relay.port)
      const lost = yield* Effect.flip(alice.initiator.send("bob", "did you get it?"))
      assert.strictEqual(lost.reason, "Timeout")
      assert.include(lost.message, "pending")
      yield* waitUntilEffect("bob stored it", Effect.map(conversation(bob), (c) => c.length === 1))

      // bob is reachable directly again
      yield* meet(alice, bob, bob.port)
      yield* waitUntilEffect(
        "delivered",
        Effect.map(conversation(alice), (c) => c.every((e) => e.state === "delivered"))
      )
      assert.deepStrictEqual(summary(yield* conversation(bob)), ["received alice noise received did you get it?"])
      const stats = yield* bob.responder.stats
      assert.deepStrictEqual([stats.received, stats.duplicates], [1, 1])
      yield* sleep(50)
      assert.deepStrictEqual(messageEvents(bob.events), ["alice: did you get it? (noise)"])
    }))

  it.live("a pending message older than the expiry is not retried, and stays in the history as pending", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", yield* tempDir("alice"))
      const bob = yield* startNode("bob", yield* tempDir("bob"))
      const DAY = 24 * 60 * 60 * 1000
      yield* Effect.orDie(alice.history.recordSent({ id: "old-1", peer: "bob", text: "eight days old", at: new Date(Date.now() - 8 * DAY), mode: "noise" }))
      yield* Effect.orDie(alice.history.recordSent({ id: "new-1", peer: "bob", text: "six days old", at: new Date(Date.now() - 6 * DAY), mode: "noise" }))
      yield* meet(alice, bob, bob.port)
      yield* waitUntilEffect(
        "the recent one delivered",
        Effect.map(conversation(alice), (c) => c.find((e) => e.id === "new-1")?.state === "delivered")
      )
      assert.strictEqual(yield* alice.initiator.retryPending(), 0)
      assert.deepStrictEqual(summary(yield* conversation(alice)), [
        "sent bob noise pending eight days old",
        "sent bob noise delivered six days old"
      ])
      assert.deepStrictEqual((yield* conversation(bob)).map((e) => e.id), ["new-1"])
    }))
})

describe("identity", () => {
  it.live("the key file is identity.key in the data dir, mode 0600, and keeps the identity across restarts", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("alice")
      const alice = yield* startNode("alice", dir)
      const file = path.join(dir, IDENTITY_FILE)
      assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600)
      assert.strictEqual(fs.readFileSync(file).length, 32)
      yield* alice.close
      // a key file made readable by others is closed again at the next start
      fs.chmodSync(file, 0o644)
      const again = yield* startNode("alice", dir)
      assert.strictEqual(again.id, alice.id)
      assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600)
    }))
})
