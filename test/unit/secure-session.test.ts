/**
 * The p2pchat/1 secure session over in-memory connections: handshake, transport, trust on
 * first use, and the attacks it must refuse. Each side has its own identity (Crypto) and its
 * own History in a temp data dir, as two nodes would.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { type Cause, Context, Effect, Exit, Fiber, Layer, Option, Queue } from "effect"
import { TestClock } from "effect/testing"
import { fingerprint } from "../../src/domain/Fingerprint.ts"
import { decodeFrame, type Frame, type HandshakeFrame, type Inner } from "../../src/domain/Frames.ts"
import { createHandshake, generateKeyPair, type KeyPair } from "../../src/domain/Noise.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import { keyId, PROLOGUE } from "../../src/services/Crypto.ts"
import * as History from "../../src/services/History.ts"
import { type FrameIO, MAX_INNER_BYTES, type SecureChannel, SessionError } from "../../src/dialects/noise/channel.ts"
import { accept, acceptTrusted, initiate, initiateTrusted, type InitiateOptions } from "../../src/dialects/noise/handshake.ts"
import * as Store from "../../src/services/Store.ts"
import * as Trust from "../../src/trust/Trust.ts"
import { checkTrust, trust } from "../../src/trust/Trust.ts"

// ---------------------------------------------------------------------------------------------
// Nodes: an identity and a History each

interface TestNode {
  readonly keyPair: KeyPair
  readonly context: Context.Context<Crypto.Crypto | History.History | Trust.Trust>
  readonly run: <A, E>(effect: Effect.Effect<A, E, Crypto.Crypto | History.History | Trust.Trust>) => Effect.Effect<A, E>
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-session-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** Crypto from a given key pair plus a History (and Trust over it) in a fresh data dir, for the test's scope. */
const makeNode = (keyPair: KeyPair = generateKeyPair()) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const context = yield* Layer.build(
      Layer.mergeAll(Crypto.layerFromKeyPair(keyPair), Trust.layer).pipe(
        Layer.provideMerge(History.layer),
        Layer.provide(Store.layer(dir))
      )
    )
    const node: TestNode = {
      keyPair,
      context,
      run: (effect) => Effect.provideContext(effect, context)
    }
    return node
  })

const pinsOf = (node: TestNode) =>
  node.run(Effect.gen(function*() {
    const pins = yield* (yield* History.History).pins()
    return pins.map((p) => ({ username: p.username, key: keyId(p.publicKey), pinnedAt: p.pinnedAt }))
  }))

// ---------------------------------------------------------------------------------------------
// In-memory connections: one queue of JSON texts per direction, as on the wire

/** One direction of a connection; `rewrite` lets a test act as the network in between. */
interface Wire {
  readonly queue: Queue.Queue<string, Cause.Done>
  /** Every text put on this wire, after any rewrite. */
  readonly log: Array<string>
  rewrite: (n: number, frame: any) => any
  /** How many times write call `k` (1-based) lets other fibers run before its frame goes out, as socket writes may. */
  delay: (call: number) => number
  calls: number
}

const makeWire = Effect.map(Queue.unbounded<string, Cause.Done>(), (queue): Wire => ({
  queue,
  log: [],
  rewrite: (_n, frame) => frame,
  delay: () => 0,
  calls: 0
}))

const closedError = new SessionError({ reason: "Closed", message: "connection closed" })

/** Decodes a text as the Responder/Initiator would (Frames.ts). */
const toFrame = (text: string): Frame => {
  const r = decodeFrame(text)
  if (r._tag !== "Success") throw new Error(`test bug: ${text} is not a frame: ${r.failure}`)
  return r.success
}

const frameIO = (inbound: Wire, outbound: Wire): FrameIO => ({
  write: (frame) =>
    Effect.suspend(() => {
      const text = JSON.stringify(outbound.rewrite(outbound.log.length + 1, frame))
      const put = Effect.suspend(() => {
        outbound.log.push(text)
        return Queue.offer(outbound.queue, text)
      })
      const yields = outbound.delay(++outbound.calls)
      return yields > 0 ? Effect.andThen(Effect.repeat(Effect.yieldNow, { times: yields - 1 }), put) : put
    }).pipe(Effect.asVoid),
  read: Queue.take(inbound.queue).pipe(
    Effect.mapError(() => closedError),
    Effect.flatMap((text) => {
      const r = decodeFrame(text)
      return r._tag === "Success"
        ? Effect.succeed(r.success)
        : Effect.fail(new SessionError({ reason: "Protocol", message: r.failure }))
    })
  )
})

const connect = Effect.gen(function*() {
  const toResponder = yield* makeWire
  const toInitiator = yield* makeWire
  return {
    toResponder,
    toInitiator,
    initiator: frameIO(toInitiator, toResponder),
    responder: frameIO(toResponder, toInitiator)
  }
})
type Connection = Effect.Success<typeof connect>

/** What the Responder does: read the first frame, then accept (trusted unless told otherwise). */
const acceptFirst = (io: FrameIO, username: string, trusted = true) =>
  Effect.flatMap(io.read, (first) =>
    first._tag === "Handshake"
      ? (trusted ? acceptTrusted : accept)(io, first.frame, username)
      : Effect.fail(new SessionError({ reason: "Protocol", message: `test: first frame is ${first._tag}` })))

/** Ends the wire when a side fails, as closing its socket would: the other side sees "Closed". */
const closingOnFailure = (wire: Wire) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.onError(self, () => Queue.end(wire.queue))

interface SessionSpec {
  readonly initiator: TestNode
  readonly responder: TestNode
  readonly initiatorName?: string
  readonly responderName?: string
  readonly options?: InitiateOptions
  readonly conn?: Connection
}

/** Runs both handshakes concurrently over one connection; the Exit of each side. */
const handshakeBoth = (spec: SessionSpec) =>
  Effect.gen(function*() {
    const conn = spec.conn ?? (yield* connect)
    const i = yield* Effect.forkChild(
      spec.initiator.run(initiateTrusted(conn.initiator, spec.initiatorName ?? "alice", spec.options ?? {})).pipe(
        closingOnFailure(conn.toResponder)
      )
    )
    const r = yield* Effect.forkChild(
      spec.responder.run(acceptFirst(conn.responder, spec.responderName ?? "bob")).pipe(closingOnFailure(conn.toInitiator))
    )
    return { initiator: yield* Fiber.await(i), responder: yield* Fiber.await(r), conn }
  })

const success = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isSuccess(exit)) return exit.value
  throw new Error(`expected success, got ${String(Exit.findErrorOption(exit).pipe(Option.getOrElse(() => exit)))}`)
}

const sessionFailure = <A, E>(exit: Exit.Exit<A, E>): SessionError => {
  const e = Exit.findErrorOption(exit)
  if (Option.isNone(e) || !(e.value instanceof SessionError)) {
    throw new Error(`expected a SessionError, got ${Exit.isSuccess(exit) ? "success" : String(exit.cause)}`)
  }
  return e.value
}

/** A session both sides completed. */
const establish = (spec: SessionSpec) =>
  Effect.map(handshakeBoth(spec), (r) => ({ a: success(r.initiator), b: success(r.responder), conn: r.conn }))

const msg = (id: string, text: string): Inner => ({ type: "msg", id, text, sentAt: "2024-05-01T10:00:00.000Z" })

/** The next raw text on a wire: the network's view of a frame. */
const takeText = (wire: Wire) => Queue.take(wire.queue).pipe(Effect.orDie)

const flipBitInBase64 = (b64: string, byteIndex: number): string => {
  const bytes = Buffer.from(b64, "base64")
  bytes[byteIndex < 0 ? bytes.length + byteIndex : byteIndex]! ^= 0x01
  return bytes.toString("base64")
}

const withCt = (text: string, f: (bytes: Buffer) => Buffer): Frame => {
  const frame = JSON.parse(text) as { ct: string }
  return toFrame(JSON.stringify({ ct: f(Buffer.from(frame.ct, "base64")).toString("base64") }))
}

/** Asserts the channel is dead: open (even of a genuine frame), send and receive all fail with Closed. */
const assertDead = (channel: SecureChannel, genuine: Frame) =>
  Effect.gen(function*() {
    assert.isFalse(yield* channel.isOpen)
    const opened = yield* Effect.flip(channel.open(genuine))
    assert.strictEqual(opened.reason, "Closed")
    const sent = yield* Effect.flip(channel.send(msg("m-late", "late")))
    assert.strictEqual(sent.reason, "Closed")
    const received = yield* Effect.flip(channel.receive)
    assert.strictEqual(received.reason, "Closed")
  })

// ---------------------------------------------------------------------------------------------

describe("secure session: handshake and transport", () => {
  it.effect("a whole session carries msg and ack inner objects intact in both directions", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b } = yield* establish({ initiator: alice, responder: bob })

      const m1 = msg("11111111-1111-4111-8111-111111111111", "hello bob, ünïcødé ✓")
      yield* a.send(m1)
      assert.deepStrictEqual(yield* b.receive, m1)
      yield* b.send({ type: "ack", id: m1.id })
      assert.deepStrictEqual(yield* a.receive, { type: "ack", id: m1.id })

      const m2 = msg("22222222-2222-4222-8222-222222222222", "hi alice")
      yield* b.send(m2)
      assert.deepStrictEqual(yield* a.receive, m2)
      yield* a.send({ type: "ack", id: m2.id })
      assert.deepStrictEqual(yield* b.receive, { type: "ack", id: m2.id })

      // several in a row keep their order
      for (let i = 0; i < 5; i++) yield* a.send(msg(`m${i}`, `text ${i}`))
      for (let i = 0; i < 5; i++) assert.deepStrictEqual(yield* b.receive, msg(`m${i}`, `text ${i}`))
      assert.isTrue(yield* a.isOpen)
      assert.isTrue(yield* b.isOpen)
    }))

  it.effect("concurrent sends over a slow connection reach the peer in nonce order and all open", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
      // later writes take less time than earlier ones: unserialised sends would overtake
      conn.toResponder.delay = (call) => Math.max(0, 20 - 2 * call)
      const sent = Array.from({ length: 8 }, (_, i) => msg(`c${i}`, `concurrent ${i}`))
      yield* Effect.forEach(sent, (m) => a.send(m), { concurrency: "unbounded", discard: true })
      const got: Array<Inner> = []
      for (let i = 0; i < sent.length; i++) got.push(yield* b.receive)
      assert.sameDeepMembers(got, sent)
      assert.isTrue(yield* b.isOpen)
    }))

  it.effect("the wire carries only the documented frames: proto+hs, hs, hs, then ct; no plaintext", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
      yield* a.send(msg("m1", "secret words"))
      yield* b.receive
      const sent = conn.toResponder.log.map((t) => JSON.parse(t))
      assert.deepStrictEqual(Object.keys(sent[0]).sort(), ["hs", "proto"])
      assert.strictEqual(sent[0].proto, "p2pchat/1")
      assert.strictEqual(Buffer.from(sent[0].hs, "base64").length, 32) // e only, empty payload
      assert.deepStrictEqual(Object.keys(sent[1]), ["hs"])
      assert.deepStrictEqual(Object.keys(sent[2]), ["ct"])
      const answered = conn.toInitiator.log.map((t) => JSON.parse(t))
      assert.deepStrictEqual(answered.map((f) => Object.keys(f)), [["hs"]])
      const wire = conn.toResponder.log.join("") + conn.toInitiator.log.join("")
      assert.notInclude(wire, "secret")
      assert.notInclude(wire, "alice")
      assert.notInclude(wire, "bob")
    }))

  it.effect("each side learns the other's username, static key and fingerprint from the handshake", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b } = yield* establish({ initiator: alice, responder: bob, initiatorName: "Alice", responderName: "Bob" })
      assert.strictEqual(a.remoteUsername, "Bob")
      assert.strictEqual(b.remoteUsername, "Alice")
      assert.deepStrictEqual(a.remoteKey, bob.keyPair.publicKey)
      assert.deepStrictEqual(b.remoteKey, alice.keyPair.publicKey)
      assert.strictEqual(a.remoteFingerprint, fingerprint(bob.keyPair.publicKey))
      assert.strictEqual(b.remoteFingerprint, fingerprint(alice.keyPair.publicKey))
      const bobOwn = yield* bob.run(Effect.gen(function*() {
        return (yield* Crypto.Crypto).identity.fingerprint
      }))
      assert.strictEqual(a.remoteFingerprint, bobOwn)
    }))

  it.effect("an inner object too large for one frame is refused before encryption; the channel stays usable", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
      const big = msg("big", "x".repeat(MAX_INNER_BYTES))
      const e = yield* Effect.flip(a.send(big))
      assert.strictEqual(e.reason, "Protocol")
      assert.strictEqual(conn.toResponder.log.length, 2) // nothing written after the handshake
      const fits = msg("fits", "x".repeat(MAX_INNER_BYTES - JSON.stringify(msg("fits", "")).length))
      yield* a.send(fits)
      assert.isAtMost(conn.toResponder.log.at(-1)!.length, 64 * 1024)
      assert.deepStrictEqual(yield* b.receive, fits)
    }))

  it.effect("the handshake times out (reason Handshake) when the responder never answers", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const conn = yield* connect
      const fiber = yield* Effect.forkChild(alice.run(initiateTrusted(conn.initiator, "alice")))
      yield* TestClock.adjust("9 seconds")
      assert.isUndefined(fiber.pollUnsafe())
      yield* TestClock.adjust("1 second")
      const e = sessionFailure(yield* Fiber.await(fiber))
      assert.strictEqual(e.reason, "Handshake")
      assert.include(e.message, "10s")
      const custom = yield* Effect.forkChild(alice.run(initiate(conn.initiator, "alice", { timeout: "2 seconds" })))
      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(sessionFailure(yield* Fiber.await(custom)).reason, "Handshake")
    }))
})

describe("secure session: the channel dies on the first bad frame", () => {
  /** A session, alice's first two ct frames taken off the wire before bob reads them. */
  const twoFramesInFlight = Effect.gen(function*() {
    const alice = yield* makeNode()
    const bob = yield* makeNode()
    const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
    yield* a.send(msg("m1", "first"))
    yield* a.send(msg("m2", "second"))
    const t1 = yield* takeText(conn.toResponder)
    const t2 = yield* takeText(conn.toResponder)
    return { a, b, t1, t2 }
  })

  it.effect("control: the frames in flight open in order when untouched", () =>
    Effect.gen(function*() {
      const { b, t1, t2 } = yield* twoFramesInFlight
      assert.deepStrictEqual(yield* b.open(toFrame(t1)), msg("m1", "first"))
      assert.deepStrictEqual(yield* b.open(toFrame(t2)), msg("m2", "second"))
    }))

  it.effect("a ciphertext with one bit flipped is rejected (Decrypt) and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1 } = yield* twoFramesInFlight
      for (const index of [0, 5, -1]) {
        // each flip on a fresh channel would fail; here the first kills the channel
        const tampered = withCt(t1, (bytes) => {
          const copy = Buffer.from(bytes)
          copy[index < 0 ? copy.length + index : index]! ^= 0x01
          return copy
        })
        const e = yield* Effect.flip(b.open(tampered))
        assert.strictEqual(e.reason, index === 0 ? "Decrypt" : "Closed")
      }
      yield* assertDead(b, toFrame(t1))
    }))

  it.effect("a replayed frame (the same ct twice) is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1, t2 } = yield* twoFramesInFlight
      assert.deepStrictEqual(yield* b.open(toFrame(t1)), msg("m1", "first"))
      const e = yield* Effect.flip(b.open(toFrame(t1)))
      assert.strictEqual(e.reason, "Decrypt")
      assert.include(e.message, "replayed")
      yield* assertDead(b, toFrame(t2))
    }))

  it.effect("reordered frames (the second delivered first) are rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1, t2 } = yield* twoFramesInFlight
      const e = yield* Effect.flip(b.open(toFrame(t2)))
      assert.strictEqual(e.reason, "Decrypt")
      yield* assertDead(b, toFrame(t1))
    }))

  it.effect("a truncated ciphertext is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1 } = yield* twoFramesInFlight
      const e = yield* Effect.flip(b.open(withCt(t1, (bytes) => bytes.subarray(0, bytes.length - 1))))
      assert.strictEqual(e.reason, "Decrypt")
      yield* assertDead(b, toFrame(t1))
    }))

  it.effect("a ciphertext shorter than the tag is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1 } = yield* twoFramesInFlight
      const e = yield* Effect.flip(b.open(withCt(t1, (bytes) => bytes.subarray(0, 10))))
      assert.strictEqual(e.reason, "Decrypt")
      yield* assertDead(b, toFrame(t1))
    }))

  it.effect("a non-ct frame after the handshake (classic plain, or a new hs) is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1 } = yield* twoFramesInFlight
      const plain = toFrame(JSON.stringify({ unencrypted_message: Buffer.from("injected").toString("base64") }))
      const e = yield* Effect.flip(b.open(plain))
      assert.strictEqual(e.reason, "Protocol")
      yield* assertDead(b, toFrame(t1))

      const again = yield* twoFramesInFlight
      const hs = toFrame(JSON.stringify({ proto: "p2pchat/1", hs: Buffer.alloc(32).toString("base64") }))
      assert.strictEqual((yield* Effect.flip(again.b.open(hs))).reason, "Protocol")
      yield* assertDead(again.b, toFrame(again.t1))
    }))

  it.effect("a ct that is not canonical base64, or longer than a Noise message, is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const { b, t1 } = yield* twoFramesInFlight
      const ct = (JSON.parse(t1) as { ct: string }).ct
      // drop the padding: the same bytes to a lenient decoder, refused here
      const unpadded = toFrame(JSON.stringify({ ct: ct.replace(/=+$/, "") + (ct.endsWith("=") ? "" : "A") }))
      assert.strictEqual((yield* Effect.flip(b.open(unpadded))).reason, "Protocol")
      yield* assertDead(b, toFrame(t1))

      const again = yield* twoFramesInFlight
      const huge = toFrame(JSON.stringify({ ct: Buffer.alloc(65536).toString("base64") }))
      const e = yield* Effect.flip(again.b.open(huge))
      assert.strictEqual(e.reason, "Protocol")
      assert.include(e.message, "65535")
      yield* assertDead(again.b, toFrame(again.t1))
    }))

  it.effect("a decrypted frame that is not a valid inner object is rejected and the channel is dead", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
      // alice's channel only sends Inner objects; bypass the type to send a bad one
      yield* a.send({ type: "msg", id: "x" } as unknown as Inner)
      yield* a.send(msg("m2", "fine"))
      const e = yield* Effect.flip(b.receive)
      assert.strictEqual(e.reason, "Protocol")
      yield* assertDead(b, toFrame(yield* takeText(conn.toResponder)))
    }))

  it.effect("a session whose connection fails while reading is dead afterwards", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { b, conn } = yield* establish({ initiator: alice, responder: bob })
      yield* Queue.end(conn.toResponder.queue)
      assert.strictEqual((yield* Effect.flip(b.receive)).reason, "Closed")
      assert.isFalse(yield* b.isOpen)
    }))
})

describe("secure session: handshake attacks", () => {
  it.effect("a bit flipped in any handshake message in flight makes the handshake fail; no session, no inner", () =>
    Effect.gen(function*() {
      for (const which of [1, 2, 3] as const) {
        const alice = yield* makeNode()
        const bob = yield* makeNode()
        const conn = yield* connect
        const flip = (n: number, frame: any) =>
          n === (which === 3 ? 2 : 1) ? { ...frame, hs: flipBitInBase64(frame.hs, which === 1 ? 3 : -1) } : frame
        if (which === 2) conn.toInitiator.rewrite = flip
        else conn.toResponder.rewrite = flip
        const r = yield* handshakeBoth({ initiator: alice, responder: bob, conn })
        // the responder never completes: the message it must authenticate is altered (3), or
        // the initiator cannot authenticate message 2 (1: the responder's view of e differs)
        const e = sessionFailure(r.responder)
        if (which === 3) {
          assert.strictEqual(e.reason, "Handshake", `message ${which}`)
        } else {
          assert.strictEqual(e.reason, "Closed", `message ${which}`)
          assert.strictEqual(sessionFailure(r.initiator).reason, "Handshake", `message ${which}`)
        }
        assert.deepStrictEqual(yield* pinsOf(bob), [], `message ${which}: the responder pinned nothing`)
      }
    }))

  it.effect("a relay that substitutes its own ephemeral key (message 1 or 2) cannot complete the handshake", () =>
    Effect.gen(function*() {
      for (const which of [1, 2] as const) {
        const alice = yield* makeNode()
        const bob = yield* makeNode()
        const conn = yield* connect
        const mallory = generateKeyPair().publicKey
        const substitute = (_n: number, frame: any) => {
          const bytes = Buffer.from(frame.hs, "base64")
          bytes.set(mallory, 0) // e is the first 32 bytes of messages 1 and 2
          return { ...frame, hs: bytes.toString("base64") }
        }
        if (which === 1) conn.toResponder.rewrite = (n, f) => (n === 1 ? substitute(n, f) : f)
        else conn.toInitiator.rewrite = substitute
        const r = yield* handshakeBoth({ initiator: alice, responder: bob, conn })
        assert.strictEqual(sessionFailure(r.initiator).reason, "Handshake", `message ${which}`)
        assert.isTrue(Exit.isFailure(r.responder), `message ${which}`)
        assert.strictEqual(conn.toResponder.log.length, 1, `message ${which}: the initiator never sent message 3`)
        assert.deepStrictEqual(yield* pinsOf(alice), [])
        assert.deepStrictEqual(yield* pinsOf(bob), [])
      }
    }))

  it.effect("a MITM running its own handshakes with both sides is refused by the pinned key (KeyChanged)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const mallory = yield* makeNode()
      yield* establish({ initiator: alice, responder: bob }) // pins both ways

      // mallory answers alice as "bob" and, in parallel, calls bob as "alice"
      const towardAlice = yield* handshakeBoth({ initiator: alice, responder: mallory, responderName: "bob" })
      const towardBob = yield* handshakeBoth({ initiator: mallory, responder: bob, initiatorName: "alice" })
      assert.strictEqual(sessionFailure(towardAlice.initiator).reason, "KeyChanged")
      assert.strictEqual(sessionFailure(towardBob.responder).reason, "KeyChanged")
      assert.strictEqual(towardAlice.conn.toResponder.log.length, 1, "alice never revealed herself in message 3")
    }))

  it.effect("a MITM with its own key is refused on first contact when the peer announced its id (expectedKeyId)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const mallory = yield* makeNode()
      const r = yield* handshakeBoth({
        initiator: alice,
        responder: mallory,
        responderName: "bob",
        options: { expectedUsername: "bob", expectedKeyId: keyId(bob.keyPair.publicKey) }
      })
      const e = sessionFailure(r.initiator)
      assert.strictEqual(e.reason, "Handshake")
      assert.include(e.message, fingerprint(bob.keyPair.publicKey))
      assert.include(e.message, fingerprint(mallory.keyPair.publicKey))
      assert.include(e.message, "impersonat")
      assert.deepStrictEqual(yield* pinsOf(alice), [], "nothing pinned for an impostor")
      assert.strictEqual(r.conn.toResponder.log.length, 1, "message 3 never sent")
    }))

  it.effect("replaying a recorded initiator session into a fresh responder yields no session and no inner message", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a, b, conn } = yield* establish({ initiator: alice, responder: bob })
      yield* a.send(msg("m1", "pay carol 10"))
      yield* a.send(msg("m2", "pay carol 20"))
      assert.deepStrictEqual(yield* b.receive, msg("m1", "pay carol 10"))
      assert.deepStrictEqual(yield* b.receive, msg("m2", "pay carol 20"))
      const recorded = [...conn.toResponder.log]
      assert.strictEqual(recorded.length, 4) // hs1, hs3, ct, ct

      // the recording played into bob again: bob answers with a fresh ephemeral, so message 3
      // (bound to the old one) does not authenticate
      const replay = yield* connect
      for (const text of recorded.slice(1)) yield* Queue.offer(replay.toResponder.queue, text)
      const first = toFrame(recorded[0]!)
      assert.strictEqual(first._tag, "Handshake")
      const exit = yield* Effect.exit(bob.run(acceptTrusted(replay.responder, (first as { frame: HandshakeFrame }).frame, "bob")))
      const e = sessionFailure(exit)
      assert.strictEqual(e.reason, "Handshake")
      // bob's message 2 differs from the recorded one: a new ephemeral
      assert.notStrictEqual(replay.toInitiator.log[0], conn.toInitiator.log[0])
      // the ct frames were never opened: they are still waiting on the wire
      assert.strictEqual(yield* Queue.size(replay.toResponder.queue), 2)
    }))

  it.effect("the responder refuses message 1 with a wrong or missing proto, before answering", () =>
    Effect.gen(function*() {
      const bob = yield* makeNode()
      const m1 = createHandshake({ initiator: true, prologue: PROLOGUE, staticKey: generateKeyPair() }).writeMessage()
      const hs = Buffer.from(m1).toString("base64")
      for (const first of [{ proto: "p2pchat/2", hs }, { hs }] as const) {
        const conn = yield* connect
        yield* Queue.end(conn.toResponder.queue) // a responder that went on would see Closed, not hang
        const e = yield* Effect.flip(bob.run(acceptTrusted(conn.responder, first, "bob")))
        assert.strictEqual(e._tag, "SessionError")
        if (e._tag !== "SessionError") continue
        assert.strictEqual(e.reason, "Protocol")
        assert.include(e.message, "p2pchat/1")
        if ("proto" in first) assert.include(e.message, "p2pchat/2")
        assert.deepStrictEqual(conn.toInitiator.log, [], "no message 2 was sent")
      }
    }))

  it.effect("the responder refuses a message 1 that carries a payload", () =>
    Effect.gen(function*() {
      const bob = yield* makeNode()
      const m1 = createHandshake({ initiator: true, prologue: PROLOGUE, staticKey: generateKeyPair() })
        .writeMessage(new TextEncoder().encode("{\"username\":\"x\"}"))
      const conn = yield* connect
      yield* Queue.end(conn.toResponder.queue)
      const e = yield* Effect.flip(
        bob.run(acceptTrusted(conn.responder, { proto: "p2pchat/1", hs: Buffer.from(m1).toString("base64") }, "bob"))
      )
      assert.strictEqual(e._tag === "SessionError" && e.reason, "Handshake")
      assert.include(e.message, "empty payload")
      assert.deepStrictEqual(conn.toInitiator.log, [])
    }))

  it.effect("a handshake with another prologue fails (the prologue p2pchat/1 is bound into the keys)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const conn = yield* connect
      const responder = createHandshake({
        initiator: false,
        prologue: new TextEncoder().encode("p2pchat/0"),
        staticKey: generateKeyPair()
      })
      const fiber = yield* Effect.forkChild(alice.run(initiateTrusted(conn.initiator, "alice")))
      const first = JSON.parse(yield* takeText(conn.toResponder)) as { hs: string }
      responder.readMessage(Buffer.from(first.hs, "base64"))
      const m2 = responder.writeMessage(new TextEncoder().encode("{\"username\":\"bob\"}"))
      yield* Queue.offer(conn.toInitiator.queue, JSON.stringify({ hs: Buffer.from(m2).toString("base64") }))
      assert.strictEqual(sessionFailure(yield* Fiber.await(fiber)).reason, "Handshake")
    }))

  it.effect("message 2 without a valid {username} payload is refused", () =>
    Effect.gen(function*() {
      for (const payload of ["hello", "{\"username\":\"\"}", "{\"name\":\"bob\"}", "{\"username\":\"a\\u0000b\"}"]) {
        const alice = yield* makeNode()
        const conn = yield* connect
        const responder = createHandshake({ initiator: false, prologue: PROLOGUE, staticKey: generateKeyPair() })
        const fiber = yield* Effect.forkChild(alice.run(initiateTrusted(conn.initiator, "alice")))
        const first = JSON.parse(yield* takeText(conn.toResponder)) as { hs: string }
        responder.readMessage(Buffer.from(first.hs, "base64"))
        const m2 = responder.writeMessage(new TextEncoder().encode(payload))
        yield* Queue.offer(conn.toInitiator.queue, JSON.stringify({ hs: Buffer.from(m2).toString("base64") }))
        const e = sessionFailure(yield* Fiber.await(fiber))
        assert.strictEqual(e.reason, "Handshake", payload)
        assert.include(e.message, "username", payload)
        assert.deepStrictEqual(yield* pinsOf(alice), [], payload)
      }
    }))

  it.effect("a frame other than hs where a handshake message is due is refused (Protocol)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const conn = yield* connect
      yield* Queue.offer(conn.toInitiator.queue, JSON.stringify({ key: 5 }))
      const e = yield* Effect.flip(alice.run(initiateTrusted(conn.initiator, "alice")))
      assert.strictEqual(e._tag === "SessionError" && e.reason, "Protocol")
      assert.include(e.message, "message 2")
    }))

  it.effect("a handshake message over the Noise limit is refused without decoding it", () =>
    Effect.gen(function*() {
      const bob = yield* makeNode()
      const conn = yield* connect
      const hs = Buffer.alloc(65536).toString("base64")
      const e = yield* Effect.flip(bob.run(acceptTrusted(conn.responder, { proto: "p2pchat/1", hs }, "bob")))
      assert.strictEqual(e._tag === "SessionError" && e.reason, "Protocol")
      assert.include(e.message, "65535")
    }))
})

describe("secure session: the initiator reaches the peer it meant", () => {
  it.effect("a responder answering under another username than the one asked for is refused, before message 3", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const r = yield* handshakeBoth({
        initiator: alice,
        responder: bob,
        responderName: "bob",
        options: { expectedUsername: "carol" }
      })
      const e = sessionFailure(r.initiator)
      assert.strictEqual(e.reason, "Handshake")
      assert.include(e.message, "\"bob\"")
      assert.include(e.message, "\"carol\"")
      assert.strictEqual(r.conn.toResponder.log.length, 1)
      assert.deepStrictEqual(yield* pinsOf(alice), [], "no pin for a node that is not the one asked for")
      assert.isTrue(Exit.isFailure(r.responder))
    }))

  it.effect("the expected username and announced key are accepted when they match (names case-insensitively)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const { a } = yield* establish({
        initiator: alice,
        responder: bob,
        responderName: "Bob",
        options: { expectedUsername: "BOB", expectedKeyId: keyId(bob.keyPair.publicKey) }
      })
      assert.strictEqual(a.remoteUsername, "Bob")
    }))

  it.effect("a responder whose key differs from the announced id is refused (reason Handshake)", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const other = generateKeyPair()
      const r = yield* handshakeBoth({
        initiator: alice,
        responder: bob,
        options: { expectedUsername: "bob", expectedKeyId: keyId(other.publicKey) }
      })
      const e = sessionFailure(r.initiator)
      assert.strictEqual(e.reason, "Handshake")
      assert.include(e.message, fingerprint(other.publicKey))
      assert.include(e.message, fingerprint(bob.keyPair.publicKey))
      assert.deepStrictEqual(yield* pinsOf(alice), [])
    }))
})

describe("secure session: trust on first use", () => {
  it.effect("the first session pins each peer's key under its lower-cased name", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      yield* establish({ initiator: alice, responder: bob, initiatorName: "Alice", responderName: "BoB" })
      const alicePins = yield* pinsOf(alice)
      const bobPins = yield* pinsOf(bob)
      assert.deepStrictEqual(alicePins.map((p) => [p.username, p.key]), [["bob", keyId(bob.keyPair.publicKey)]])
      assert.deepStrictEqual(bobPins.map((p) => [p.username, p.key]), [["alice", keyId(alice.keyPair.publicKey)]])
    }))

  it.effect("checkTrust: FirstUse pins, the same key again is Match, and a Match changes no pin", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      assert.deepStrictEqual(yield* alice.run(checkTrust("Bob", bob.keyPair.publicKey)), { _tag: "FirstUse" })
      const before = yield* pinsOf(alice)
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* alice.run(checkTrust("bob", bob.keyPair.publicKey)), { _tag: "Match" })
      // a second full session with the same keys also matches
      yield* establish({ initiator: alice, responder: bob })
      assert.deepStrictEqual(yield* pinsOf(alice), before, "pin and pinnedAt unchanged")
    }))

  it.effect("a third key claiming a pinned name is refused with KeyChanged showing both fingerprints; the pin stays", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const mallory = yield* makeNode()
      yield* establish({ initiator: alice, responder: bob })
      const pinsBefore = yield* pinsOf(alice)
      const bobPinsBefore = yield* pinsOf(bob)

      // mallory answers as "Bob" (case does not help it)
      const asResponder = yield* handshakeBoth({ initiator: alice, responder: mallory, responderName: "Bob" })
      const e = sessionFailure(asResponder.initiator)
      assert.strictEqual(e.reason, "KeyChanged")
      assert.include(e.message, fingerprint(bob.keyPair.publicKey))
      assert.include(e.message, fingerprint(mallory.keyPair.publicKey))
      assert.include(e.message, "trust Bob")
      assert.strictEqual(e.username, "Bob")
      assert.deepStrictEqual(e.presentedKey, mallory.keyPair.publicKey)
      assert.deepStrictEqual(yield* pinsOf(alice), pinsBefore)

      // mallory calls bob as "alice"
      const asInitiator = yield* handshakeBoth({ initiator: mallory, responder: bob, initiatorName: "alice" })
      const e2 = sessionFailure(asInitiator.responder)
      assert.strictEqual(e2.reason, "KeyChanged")
      assert.include(e2.message, fingerprint(alice.keyPair.publicKey))
      assert.include(e2.message, fingerprint(mallory.keyPair.publicKey))
      assert.include(e2.message, "trust alice")
      assert.deepStrictEqual(yield* pinsOf(bob), bobPinsBefore)

      const changed = yield* alice.run(checkTrust("bob", mallory.keyPair.publicKey))
      assert.deepStrictEqual(changed, {
        _tag: "Changed",
        pinned: bob.keyPair.publicKey,
        pinnedFingerprint: fingerprint(bob.keyPair.publicKey),
        presentedFingerprint: fingerprint(mallory.keyPair.publicKey)
      })
    }))

  it.effect("after `trust USER` the new key is accepted, and the old one is then refused", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const newBob = yield* makeNode()
      yield* establish({ initiator: alice, responder: bob })
      const refused = yield* handshakeBoth({ initiator: alice, responder: newBob })
      assert.strictEqual(sessionFailure(refused.initiator).reason, "KeyChanged")

      yield* alice.run(trust("BOB", newBob.keyPair.publicKey))
      const { a } = yield* establish({ initiator: alice, responder: newBob })
      assert.deepStrictEqual(a.remoteKey, newBob.keyPair.publicKey)
      assert.deepStrictEqual((yield* pinsOf(alice)).map((p) => [p.username, p.key]), [["bob", keyId(newBob.keyPair.publicKey)]])

      const old = yield* handshakeBoth({ initiator: alice, responder: bob })
      assert.strictEqual(sessionFailure(old.initiator).reason, "KeyChanged")
    }))

  it.effect("a responder refusing a changed key says why in one error frame; the initiator's session fails with PeerRefused", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const newAlice = yield* makeNode()
      yield* establish({ initiator: alice, responder: bob })
      const r = yield* handshakeBoth({ initiator: newAlice, responder: bob })
      assert.strictEqual(sessionFailure(r.responder).reason, "KeyChanged")
      // the responder's last frame: the code, nothing more (not even a fingerprint)
      assert.strictEqual(r.conn.toInitiator.log.at(-1), JSON.stringify({ error: "key-changed" }))
      const e = yield* Effect.flip(success(r.initiator).receive)
      assert.strictEqual(e.reason, "PeerRefused")
      assert.strictEqual(e.refusal, "key-changed")
      assert.include(e.message, "pinned another key")
      // an initiator refusing a changed key sends nothing of the kind (it never sends message 3)
      const refused = yield* handshakeBoth({ initiator: alice, responder: newAlice, responderName: "bob" })
      assert.strictEqual(sessionFailure(refused.initiator).reason, "KeyChanged")
      assert.isFalse(refused.conn.toResponder.log.some((t) => t.includes("error")))
    }))

  it.effect("the bare handshakes (initiate/accept) leave pins to the caller", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const bob = yield* makeNode()
      const conn = yield* connect
      const [a, b] = yield* Effect.all([
        alice.run(initiate(conn.initiator, "alice")),
        bob.run(acceptFirst(conn.responder, "bob", false))
      ], { concurrency: 2 })
      assert.strictEqual(a.remoteUsername, "bob")
      assert.strictEqual(b.remoteUsername, "alice")
      assert.deepStrictEqual(yield* pinsOf(alice), [])
      assert.deepStrictEqual(yield* pinsOf(bob), [])
    }))

  it.effect("two concurrent first sessions for one new name with different keys pin only one of them", () =>
    Effect.gen(function*() {
      const alice = yield* makeNode()
      const real = Context.get(alice.context, History.History)
      // a History whose reads give other fibers a turn, as any asynchronous store would
      const yielding = History.History.of({ ...real, getPin: (u) => Effect.tap(real.getPin(u), () => Effect.yieldNow) })
      const k1 = generateKeyPair().publicKey
      const k2 = generateKeyPair().publicKey
      const results = yield* Effect.all([checkTrust("dave", k1), checkTrust("dave", k2)], { concurrency: 2 }).pipe(
        Effect.provideService(History.History, yielding)
      )
      assert.deepStrictEqual(results.map((r) => r._tag), ["FirstUse", "Changed"])
      assert.deepStrictEqual((yield* pinsOf(alice)).map((p) => p.key), [keyId(k1)])
    }))
})
