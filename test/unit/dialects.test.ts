/**
 * Every dialect's two roles against each other over an in-memory connection
 * (MemoryTransport): the initiator's OutgoingSession on the dialed FrameChannel, the
 * responder's IncomingSession on the accepted one, with the same framing as on TCP. No
 * socket is opened. The frames each side writes are recorded as the exact bytes that go
 * on the wire (`encodeFrame`, what `FrameChannel.send` writes).
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer, Queue, Result } from "effect"
import {
  CLASSIC_FRAME_LIMIT,
  classicDecrypt,
  classicEncrypt,
  classicKey24,
  classicShared,
  splitForClassic
} from "../../src/domain/Classic.ts"
import { fingerprint } from "../../src/domain/Fingerprint.ts"
import { ACK_REFUSALS, decodeInner, type Frame, refusalText } from "../../src/domain/Frames.ts"
import { encodeFrame, MAX_FRAME_BYTES } from "../../src/domain/Framing.ts"
import { generateKeyPair, type KeyPair } from "../../src/domain/Noise.ts"
import * as Classic3des from "../../src/dialects/classic3des.ts"
import * as ClassicPlain from "../../src/dialects/classicPlain.ts"
import type { IncomingSession, OutgoingSession, Received } from "../../src/dialects/Dialect.ts"
import * as Legacy from "../../src/dialects/legacy.ts"
import type { Pace } from "../../src/dialects/wire.ts"
import { SessionError } from "../../src/dialects/noise/channel.ts"
import * as Noise from "../../src/dialects/noise/index.ts"
import * as Plain from "../../src/dialects/plain.ts"
import * as Crypto from "../../src/services/Crypto.ts"
import { keyId } from "../../src/services/Crypto.ts"
import * as HistoryService from "../../src/services/History.ts"
import type { History } from "../../src/services/History.ts"
import * as Store from "../../src/services/Store.ts"
import * as MemoryTransport from "../../src/transport/MemoryTransport.ts"
import { type FrameChannel, Transport } from "../../src/transport/Transport.ts"
import * as Trust from "../../src/trust/Trust.ts"

const CLIENT = "10.0.0.1"
const SERVER = "10.0.0.2"
const PORT = 6001

// ---------------------------------------------------------------------------------------------
// A memory connection: the dialed channel and the accepted one

const transportAt = (network: MemoryTransport.MemoryNetwork, address: string) =>
  Effect.gen(function*() {
    return yield* Transport
  }).pipe(Effect.provide(MemoryTransport.layer(network, address)))

/**
 * One connection from CLIENT to SERVER on a fresh MemoryNetwork: `client` is what the
 * initiator dialed, `server` what the responder accepted (opened with the 64 KiB frame
 * limit). Both stay open for the test's scope.
 */
const connection = Effect.gen(function*() {
  const network = MemoryTransport.makeNetwork()
  const serverSide = yield* transportAt(network, SERVER)
  const clientSide = yield* transportAt(network, CLIENT)
  const accepted = yield* Deferred.make<FrameChannel>()
  yield* serverSide.serve({ host: SERVER, port: PORT }, (c) =>
    Effect.gen(function*() {
      const ch = yield* c.open(MAX_FRAME_BYTES)
      yield* Deferred.succeed(accepted, ch)
      // The connection lives as long as this handler.
      yield* Effect.never
    }).pipe(Effect.catch(() => Effect.void)))
  const client = yield* clientSide.dial(SERVER, PORT, 1000)
  const server = yield* Deferred.await(accepted)
  return { client, server }
})

/** A channel that records every frame it writes (the exact bytes) and may rewrite it first. */
const recording = (ch: FrameChannel, rewrite: (frame: any) => any = (f) => f) => {
  const wire: Array<string> = []
  const channel: FrameChannel = {
    ...ch,
    send: (frame) =>
      Effect.suspend(() => {
        const f = rewrite(frame)
        wire.push(encodeFrame(f))
        return ch.send(f)
      })
  }
  return { channel, wire }
}

const parsed = (wire: ReadonlyArray<string>): Array<Record<string, unknown>> => wire.map((t) => JSON.parse(t))

/** A pace that counts the writes it lets through (and does not wait). */
const countingPace = () => {
  const counter = { writes: 0 }
  const pace: Pace = (write) => Effect.tap(write, () => Effect.sync(() => void counter.writes++))
  return { pace, counter }
}

/** Serves `session` like the Responder, until it fails: every message into `got`, acked when the sender wants it. */
const serveInto = (session: IncomingSession, got: Queue.Queue<Received>) =>
  Effect.forever(Effect.gen(function*() {
    const r = yield* session.receive
    if (r.wantsAck) yield* session.ack(r.inner.id)
    yield* Queue.offer(got, r)
  }))

/** Reads the initiator's replies like the Links' pump: every acked id into `acks`. */
const pumpAcks = (session: OutgoingSession, acks: Queue.Queue<string>) =>
  Effect.forkChild(Effect.forever(Effect.flatMap(session.replies, (r) => Queue.offer(acks, r.id))))

const firstFrame = (ch: FrameChannel) => ch.next.pipe(Effect.orDie)

const sessionError = <A>(effect: Effect.Effect<A, SessionError>) =>
  Effect.flip(effect).pipe(Effect.timeout("2 seconds"), Effect.orDie)

const msg = (r: Received) => {
  assert.strictEqual(r.inner.type, "msg")
  return r.inner as Extract<Received["inner"], { type: "msg" }>
}

// ---------------------------------------------------------------------------------------------
// Identities for the noise dialect: a key pair, and a History (and Trust) in a temp dir

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "p2pchat-dialects-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const identity = (keyPair: KeyPair = generateKeyPair()) =>
  Effect.gen(function*() {
    const dir = yield* tempDir
    const context = yield* Layer.build(
      Layer.mergeAll(Crypto.layerFromKeyPair(keyPair), Trust.layer).pipe(
        Layer.provideMerge(HistoryService.layer),
        Layer.provide(Store.layer(dir))
      )
    )
    return { keyPair, context: context as Context.Context<Crypto.Crypto | Trust.Trust | History> }
  })

type Identity = Effect.Success<ReturnType<typeof identity>>

/** Both roles of a secure session between `alice` (initiator) and `bob` (responder). */
const secureSession = (
  alice: Identity,
  bob: Identity,
  options: { readonly tamper?: { on: boolean } } = {}
) =>
  Effect.gen(function*() {
    const { client, server } = yield* connection
    const flipFirst = (ct: string) => (ct[0] === "A" ? "B" : "A") + ct.slice(1)
    const out = recording(client, (f) => (options.tamper?.on === true && "ct" in f ? { ct: flipFirst(f.ct) } : f))
    const accepting = yield* Effect.forkChild(Effect.gen(function*() {
      const first = yield* firstFrame(server)
      assert.strictEqual(first._tag, "Handshake")
      return yield* Noise.accept(server, (first as Extract<Frame, { _tag: "Handshake" }>).frame, "bob", {}).pipe(
        Effect.provideContext(bob.context)
      )
    }))
    const outgoing = yield* Noise.initiate(out.channel, "alice", {
      expectedUsername: "bob",
      expectedKeyId: keyId(bob.keyPair.publicKey)
    }).pipe(Effect.provideContext(alice.context))
    const incoming = yield* Fiber.join(accepting)
    return { outgoing, incoming, wire: out.wire, server }
  })

// ---------------------------------------------------------------------------------------------

describe("dialects over a memory connection", () => {
  it.live("the memory transport connects the two roles, with the client's address on the accepted side", () =>
    Effect.gen(function*() {
      const { client, server } = yield* connection
      assert.strictEqual(server.address, CLIENT)
      assert.strictEqual(client.address, SERVER)
      assert.strictEqual(client.port, PORT)
      yield* client.send({ ack: "x-1" })
      const f = yield* firstFrame(server)
      assert.deepStrictEqual(f, { _tag: "Ack", frame: { ack: "x-1" } })
    }))

  describe("noise", () => {
    it.live("handshake proves both names and keys; a msg goes encrypted and its ack comes back", () =>
      Effect.gen(function*() {
        const alice = yield* identity()
        const bob = yield* identity()
        const { outgoing, incoming, wire } = yield* secureSession(alice, bob)

        assert.strictEqual(outgoing.mode, "noise")
        assert.isTrue(outgoing.acked)
        assert.strictEqual(outgoing.proven?.username, "bob")
        assert.strictEqual(outgoing.proven?.fingerprint, fingerprint(bob.keyPair.publicKey))
        assert.strictEqual(incoming.proven?.username, "alice")
        assert.strictEqual(incoming.proven?.fingerprint, fingerprint(alice.keyPair.publicKey))

        const text = "hello bob, this is secret"
        yield* outgoing.send({ id: "m-1", text, sentAt: "2026-01-01T00:00:00.000Z" })
        const r = yield* incoming.receive
        assert.deepStrictEqual(r, {
          inner: { type: "msg", id: "m-1", text, sentAt: "2026-01-01T00:00:00.000Z" },
          mode: "noise",
          wantsAck: true
        })
        yield* incoming.ack("m-1")
        assert.deepStrictEqual(yield* outgoing.replies, { id: "m-1" })

        // On the wire: message 1 with the proto, message 3, then one ct frame; no plaintext.
        const frames = parsed(wire)
        assert.deepStrictEqual(frames.map((f) => Object.keys(f).sort().join(",")), ["hs,proto", "hs", "ct"])
        assert.strictEqual(frames[0]!["proto"], "p2pchat/1")
        assert.isFalse(wire.some((t) => t.includes("secret")))
        // Each side pinned the other's key on first use.
        const pinnedBy = (who: Identity, name: string) =>
          Effect.gen(function*() {
            return yield* (yield* Trust.Trust).pinned(name)
          }).pipe(Effect.provideContext(who.context), Effect.orDie)
        const bobPin = yield* pinnedBy(alice, "bob")
        const alicePin = yield* pinnedBy(bob, "alice")
        assert.deepStrictEqual(bobPin._tag === "Some" ? keyId(bobPin.value) : undefined, keyId(bob.keyPair.publicKey))
        assert.deepStrictEqual(alicePin._tag === "Some" ? keyId(alicePin.value) : undefined, keyId(alice.keyPair.publicKey))
      }))

    it.live("a refused ack carries its code inside the session; the initiator reads it, and reads a plain ack as one", () =>
      Effect.gen(function*() {
        const alice = yield* identity()
        const bob = yield* identity()
        const { outgoing, incoming } = yield* secureSession(alice, bob)
        yield* outgoing.send({ id: "g-1", text: "for the group", sentAt: "" })
        assert.strictEqual(msg(yield* incoming.receive).id, "g-1")
        yield* incoming.ack("g-1", "not-a-member")
        assert.deepStrictEqual(yield* outgoing.replies, { id: "g-1", refused: "not-a-member" })
        yield* outgoing.send({ id: "g-2", text: "again", sentAt: "" })
        yield* incoming.receive
        yield* incoming.ack("g-2")
        assert.deepStrictEqual(yield* outgoing.replies, { id: "g-2" })
      }))

    it("the inner ack's refused field: any short code decodes (a later one too), anything else is a bad inner object", () => {
      const ack = (extra: object) => decodeInner(JSON.stringify({ type: "ack", id: "a-1", ...extra }))
      assert.deepStrictEqual(Result.getOrUndefined(ack({})), { type: "ack", id: "a-1" })
      for (const code of ["not-a-member", "left", "not-in-group", "bad-list", "other-group", "some-later-code"]) {
        assert.deepStrictEqual(Result.getOrUndefined(ack({ refused: code })), { type: "ack", id: "a-1", refused: code })
      }
      for (const bad of ["", "Not-A-Member", "x".repeat(33), "a b", "\u202e", 3, null, true]) {
        assert.isTrue(Result.isFailure(ack({ refused: bad })), JSON.stringify(bad))
      }
      // every code p2pchat sends is one its own initiator explains
      for (const code of Object.keys(ACK_REFUSALS)) assert.notStrictEqual(refusalText(code), code)
      assert.strictEqual(refusalText("some-later-code"), "some-later-code")
    })

    it.live("a tampered ct frame ends the session: Decrypt, then every later frame is refused", () =>
      Effect.gen(function*() {
        const alice = yield* identity()
        const bob = yield* identity()
        const tamper = { on: false }
        const { outgoing, incoming } = yield* secureSession(alice, bob, { tamper })

        yield* outgoing.send({ id: "m-1", text: "fine", sentAt: "" })
        assert.strictEqual(msg(yield* incoming.receive).text, "fine")

        tamper.on = true
        yield* outgoing.send({ id: "m-2", text: "altered in transit", sentAt: "" })
        const e = yield* sessionError(incoming.receive)
        assert.strictEqual(e.reason, "Decrypt")

        // The session is over: an untouched frame after it is not accepted either.
        tamper.on = false
        yield* outgoing.send({ id: "m-3", text: "after the attack", sentAt: "" })
        const after = yield* sessionError(incoming.receive)
        assert.strictEqual(after.reason, "Closed")
        const ack = yield* sessionError(incoming.ack("m-3"))
        assert.strictEqual(ack.reason, "Closed")
      }))

    it.live("the trust check: a second key for a pinned name is refused with KeyChanged", () =>
      Effect.gen(function*() {
        const alice = yield* identity()
        const bob = yield* identity()
        yield* secureSession(alice, bob)
        // Someone else proves the name "alice" to bob, with a key of its own.
        const impostor = yield* identity()
        const { client, server } = yield* connection
        const accepting = yield* Effect.forkChild(Effect.gen(function*() {
          const first = yield* firstFrame(server)
          return yield* Noise.accept(server, (first as Extract<Frame, { _tag: "Handshake" }>).frame, "bob", {}).pipe(
            Effect.provideContext(bob.context)
          )
        }))
        yield* Noise.initiate(client, "alice", { expectedUsername: "bob" }).pipe(
          Effect.provideContext(impostor.context),
          Effect.ignore
        )
        const err = yield* Fiber.join(accepting).pipe(Effect.flip, Effect.timeout("2 seconds"), Effect.orDie)
        assert.strictEqual(err._tag, "SessionError")
        assert.strictEqual((err as SessionError).reason, "KeyChanged")
      }))
  })

  describe("plain p2pchat", () => {
    it.live("the frame carries the id and the sender's name, and the responder acks the id", () =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        const out = recording(client)
        const outgoing = Plain.initiate(out.channel, "alice")
        assert.strictEqual(outgoing.mode, "plain")
        assert.isTrue(outgoing.acked)

        yield* outgoing.send({ id: "p-1", text: "héllo plain", sentAt: "" })
        assert.deepStrictEqual(parsed(out.wire), [
          { unencrypted_message: Buffer.from("héllo plain").toString("base64"), id: "p-1", from: "alice" }
        ])

        const back = recording(server)
        const incoming = Legacy.accept(back.channel, yield* firstFrame(server))
        const r = yield* incoming.receive
        assert.deepStrictEqual(r, {
          inner: { type: "msg", id: "p-1", text: "héllo plain", sentAt: "" },
          mode: "plain",
          claimedFrom: "alice",
          wantsAck: true
        })
        yield* incoming.ack("p-1")
        assert.deepStrictEqual(yield* outgoing.replies, { id: "p-1" })
        // a refusal is said in secure sessions only: a plain ack is the classic shape, unchanged
        yield* incoming.ack("p-2", "not-a-member")
        assert.deepStrictEqual(yield* outgoing.replies, { id: "p-2" })
        assert.deepStrictEqual(parsed(back.wire), [{ ack: "p-1" }, { ack: "p-2" }])
      }))

    it.live("without a name the frame has no from", () =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        yield* Plain.initiate(client, undefined).send({ id: "p-2", text: "anon", sentAt: "" })
        const r = yield* Legacy.accept(server, yield* firstFrame(server)).receive
        assert.strictEqual(r.claimedFrom, undefined)
        assert.isTrue(r.wantsAck)
      }))
  })

  describe("classic plain", () => {
    it.live("a long text goes in paced parts, each frame at most 1024 bytes, with no id and no ack", () =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        const out = recording(client)
        const { pace, counter } = countingPace()
        const outgoing = ClassicPlain.initiate(out.channel, pace)
        assert.isFalse(outgoing.acked)

        // Multi-byte characters too: a cut must fall between characters.
        const text = Array.from({ length: 400 }, (_, i) => `word${i} ünï €`).join(" ")
        assert.isAbove(Buffer.byteLength(text), 3 * CLASSIC_FRAME_LIMIT)
        yield* outgoing.send({ id: "ignored", text, sentAt: "" })

        const parts = splitForClassic(text, false)
        assert.isAbove(parts.length, 3)
        assert.strictEqual(out.wire.length, parts.length)
        assert.strictEqual(counter.writes, parts.length)
        for (const bytes of out.wire) assert.isAtMost(Buffer.byteLength(bytes), CLASSIC_FRAME_LIMIT)
        for (const f of parsed(out.wire)) assert.deepStrictEqual(Object.keys(f), ["unencrypted_message"])

        const incoming = Legacy.accept(server, yield* firstFrame(server))
        const got: Array<string> = []
        for (let i = 0; i < parts.length; i++) {
          const r = yield* incoming.receive
          assert.isFalse(r.wantsAck)
          assert.strictEqual(r.mode, "plain")
          assert.strictEqual(r.claimedFrom, undefined)
          got.push(msg(r).text)
        }
        assert.deepStrictEqual(got, [...parts])
        assert.strictEqual(got.join(""), text)
      }))
  })

  describe("classic 3DES", () => {
    /** The initiator and a responder that serves every frame (answering keys), over one connection. */
    const classicPair = (options: { readonly p2p: boolean }) =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        const out = recording(client)
        const back = recording(server)
        const { pace, counter } = countingPace()
        const outgoing = Classic3des.initiate(out.channel, {
          p2p: options.p2p,
          from: "alice",
          pace,
          answerTimeoutMs: 2000
        })
        const acks = yield* Queue.unbounded<string>()
        yield* pumpAcks(outgoing, acks)
        const got = yield* Queue.unbounded<Received>()
        yield* Effect.forkChild(Effect.gen(function*() {
          const first = yield* back.channel.next
          yield* serveInto(Legacy.accept(back.channel, first), got)
        }))
        return { outgoing, acks, got, sent: out.wire, answered: back.wire, counter }
      })

    it.live("p2p variant: one key exchange per connection, then each message with its id and from, acked", () =>
      Effect.gen(function*() {
        const { outgoing, acks, got, sent, answered } = yield* classicPair({ p2p: true })
        assert.strictEqual(outgoing.mode, "classic-3des")
        assert.isTrue(outgoing.acked)

        yield* outgoing.send({ id: "c-1", text: "first", sentAt: "" })
        assert.strictEqual(yield* Queue.take(acks), "c-1")
        yield* outgoing.send({ id: "c-2", text: "second", sentAt: "" })
        assert.strictEqual(yield* Queue.take(acks), "c-2")

        const r1 = yield* Queue.take(got)
        const r2 = yield* Queue.take(got)
        assert.deepStrictEqual([r1, r2].map((r) => [msg(r).id, msg(r).text, r.mode, r.claimedFrom, r.wantsAck]), [
          ["c-1", "first", "classic-3des", "alice", true],
          ["c-2", "second", "classic-3des", "alice", true]
        ])

        // The wire: {key: a} -> {key: b}, then the two messages; acks back.
        const frames = parsed(sent)
        assert.deepStrictEqual(frames.map((f) => Object.keys(f).join(",")), [
          "key",
          "encrypted_message,id,from",
          "encrypted_message,id,from"
        ])
        const replies = parsed(answered)
        assert.deepStrictEqual(replies.map((f) => Object.keys(f).join(",")), ["key", "ack", "ack"])
        // Both sides derived the same key from the two numbers.
        const key24 = classicKey24(classicShared(frames[0]!["key"] as number, replies[0]!["key"] as number))
        const opened = frames.slice(1).map((f) => classicDecrypt(key24, f["encrypted_message"] as string))
        assert.deepStrictEqual(opened.map((o) => (o.ok ? o.text : o.reason)), ["first", "second"])
      }))

    it.live("classic-peer variant: a key exchange before every part of a split text, no id, no ack", () =>
      Effect.gen(function*() {
        const { outgoing, got, sent, answered, counter } = yield* classicPair({ p2p: false })
        assert.isFalse(outgoing.acked)
        const text = Array.from({ length: 300 }, (_, i) => `part ${i} ü`).join(" / ")
        const parts = splitForClassic(text, true)
        assert.isAbove(parts.length, 2)

        yield* outgoing.send({ id: "ignored", text, sentAt: "" })

        const frames = parsed(sent)
        assert.deepStrictEqual(frames.map((f) => Object.keys(f).join(",")), parts.flatMap(() => ["key", "encrypted_message"]))
        for (const bytes of sent) assert.isAtMost(Buffer.byteLength(bytes), CLASSIC_FRAME_LIMIT)
        // Every write to a classic peer is paced.
        assert.strictEqual(counter.writes, 2 * parts.length)

        const received: Array<string> = []
        for (let i = 0; i < parts.length; i++) {
          const r = yield* Queue.take(got)
          assert.isFalse(r.wantsAck)
          assert.strictEqual(r.mode, "classic-3des")
          received.push(msg(r).text)
        }
        assert.strictEqual(received.join(""), text)

        // Each part is under the key of the exchange just before it.
        const replies = parsed(answered)
        assert.deepStrictEqual(replies.map((f) => Object.keys(f).join(",")), parts.map(() => "key"))
        parts.forEach((part, i) => {
          const key24 = classicKey24(classicShared(frames[2 * i]!["key"] as number, replies[i]!["key"] as number))
          const o = classicDecrypt(key24, frames[2 * i + 1]!["encrypted_message"] as string)
          assert.strictEqual(o.ok ? o.text : o.reason, part)
        })
      }))

    it.live("a key nobody answers fails the send with Timeout", () =>
      Effect.gen(function*() {
        const { client } = yield* connection
        const { pace } = countingPace()
        const outgoing = Classic3des.initiate(client, { p2p: true, from: "alice", pace, answerTimeoutMs: 50 })
        yield* pumpAcks(outgoing, yield* Queue.unbounded<string>())
        const e = yield* sessionError(outgoing.send({ id: "t-1", text: "anyone?", sentAt: "" }))
        assert.strictEqual(e.reason, "Timeout")
      }))
  })

  describe("legacy.accept", () => {
    it.live("ciphertext before any key exchange: NoKey", () =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        const key24 = classicKey24(classicShared(3, 5))
        yield* client.send({ encrypted_message: classicEncrypt(key24, "too early"), id: "k-1" })
        const e = yield* sessionError(Legacy.accept(server, yield* firstFrame(server)).receive)
        assert.strictEqual(e.reason, "NoKey")
      }))

    it.live("an ack from an initiator: Unexpected (first frame or later)", () =>
      Effect.gen(function*() {
        const first = yield* connection
        yield* first.client.send({ ack: "a-1" })
        const e1 = yield* sessionError(Legacy.accept(first.server, yield* firstFrame(first.server)).receive)
        assert.strictEqual(e1.reason, "Unexpected")

        const later = yield* connection
        yield* later.client.send({ unencrypted_message: Buffer.from("hi").toString("base64"), id: "a-2" })
        yield* later.client.send({ ack: "a-2" })
        const session = Legacy.accept(later.server, yield* firstFrame(later.server))
        assert.strictEqual(msg(yield* session.receive).text, "hi")
        const e2 = yield* sessionError(session.receive)
        assert.strictEqual(e2.reason, "Unexpected")
      }))

    it.live("a ct frame or a handshake after the first frame: Unexpected", () =>
      Effect.gen(function*() {
        const a = yield* connection
        yield* a.client.send({ ct: "AAAA" })
        assert.strictEqual((yield* sessionError(Legacy.accept(a.server, yield* firstFrame(a.server)).receive)).reason, "Unexpected")
        const b = yield* connection
        yield* b.client.send({ key: 4 })
        yield* b.client.send({ proto: "p2pchat/1", hs: "AAAA" })
        const session = Legacy.accept(b.server, yield* firstFrame(b.server))
        assert.strictEqual((yield* sessionError(session.receive)).reason, "Unexpected")
      }))

    it.live("plain, key and encrypted frames mixed on one connection; a new key frame replaces the key", () =>
      Effect.gen(function*() {
        const { client, server } = yield* connection
        yield* client.send({ unencrypted_message: Buffer.from("one").toString("base64") })
        yield* client.send({ key: 7 })
        const session = Legacy.accept(server, yield* firstFrame(server))
        const r1 = yield* session.receive
        assert.strictEqual(msg(r1).text, "one")
        assert.isFalse(r1.wantsAck)

        // The key frame is answered inside `receive`; read the answer, then use the key.
        const receiving = yield* Effect.forkChild(session.receive)
        const answer1 = yield* client.next.pipe(Effect.orDie)
        assert.strictEqual(answer1._tag, "Key")
        const b1 = (answer1 as Extract<Frame, { _tag: "Key" }>).frame.key
        yield* client.send({ encrypted_message: classicEncrypt(classicKey24(classicShared(7, b1)), "two") })
        assert.strictEqual(msg(yield* Fiber.join(receiving)).text, "two")

        // A new key frame replaces the key.
        yield* client.send({ key: 11 })
        const receiving2 = yield* Effect.forkChild(session.receive)
        const answer2 = yield* client.next.pipe(Effect.orDie)
        const b2 = (answer2 as Extract<Frame, { _tag: "Key" }>).frame.key
        yield* client.send({ encrypted_message: classicEncrypt(classicKey24(classicShared(11, b2)), "three"), id: "x-3" })
        const r3 = yield* Fiber.join(receiving2)
        assert.strictEqual(msg(r3).text, "three")
        assert.isTrue(r3.wantsAck)
      }))
  })
})
