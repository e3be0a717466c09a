/**
 * The file session's wire (src/domain/FileWire.ts) and the transport's switch to a byte
 * stream after the handshake (FrameChannel.raw), on the in-memory transport.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import {
  CHUNK_BYTES,
  chunkCount,
  chunkLength,
  decodeMessage,
  decodeReply,
  decodeRequest,
  encodeControl,
  encodeData,
  encodeSums,
  FileOfferSchema,
  manifestHash,
  manifestJson,
  manifestPage,
  MAX_PLAINTEXT_BYTES,
  SUMS_PER_MESSAGE
} from "../../src/domain/FileWire.ts"
import { decodeInner } from "../../src/domain/Frames.ts"
import * as MemoryTransport from "../../src/transport/MemoryTransport.ts"
import { type FrameChannel, Transport } from "../../src/transport/Transport.ts"
import { Queue } from "effect"
import { createHash } from "node:crypto"

const ok = <A>(r: Result.Result<A, string>): A => {
  if (Result.isFailure(r)) throw new Error(r.failure)
  return r.success
}

describe("the wire's plaintexts", () => {
  it("a chunk fills one Noise message: 65,535 bytes with the tag, kind and offset", () => {
    assert.strictEqual(CHUNK_BYTES, 65_510)
    assert.strictEqual(encodeData(0, new Uint8Array(CHUNK_BYTES)).length + 16, 65_535)
    assert.isAtMost(encodeSums(0, 0, new Uint8Array(SUMS_PER_MESSAGE * 4)).length, MAX_PLAINTEXT_BYTES)
    assert.isAbove(encodeSums(0, 0, new Uint8Array(SUMS_PER_MESSAGE * 4)).length, MAX_PLAINTEXT_BYTES - 4)
    assert.strictEqual(chunkCount(0), 0)
    assert.strictEqual(chunkCount(CHUNK_BYTES), 1)
    assert.strictEqual(chunkCount(CHUNK_BYTES + 1), 2)
    assert.strictEqual(chunkLength(CHUNK_BYTES + 1, 1), 1)
  })

  it("round trips: control, data (a 6 GB offset), sums", () => {
    const c = ok(decodeMessage(encodeControl({ type: "get", offer: "o-1", item: 2, offset: 3 * CHUNK_BYTES })))
    assert.deepStrictEqual(c, { _tag: "Control", json: { type: "get", offer: "o-1", item: 2, offset: 3 * CHUNK_BYTES } })
    assert.deepStrictEqual(ok(decodeRequest(c._tag === "Control" ? c.json : null)), { type: "get", offer: "o-1", item: 2, offset: 3 * CHUNK_BYTES })
    const d = ok(decodeMessage(encodeData(6_000_000_000, new Uint8Array([1, 2, 3]))))
    assert.strictEqual(d._tag, "Data")
    if (d._tag === "Data") assert.deepStrictEqual([d.offset, [...d.bytes]], [6_000_000_000, [1, 2, 3]])
    const s = ok(decodeMessage(encodeSums(7, 9, new Uint8Array([0, 0, 0, 1, 255, 255, 255, 255]))))
    assert.deepInclude(s, { _tag: "Sums", item: 7, first: 9 })
  })

  it("refuses what is not the wire: empty, unknown kind, short header, ragged sums, bad JSON, bad requests", () => {
    for (const bad of [new Uint8Array(0), new Uint8Array([9]), new Uint8Array([1, 0, 0]), new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0, 1]), new Uint8Array([0, 0x7b])]) {
      assert.isTrue(Result.isFailure(decodeMessage(bad)))
    }
    for (const json of [{ type: "get", offer: "x", item: -1, offset: 0 }, { type: "rm", offer: "x" }, { type: "get", offer: "", item: 0, offset: 0 }, { type: "sums", offer: "x", item: 0, from: 0.5 }]) {
      assert.isTrue(Result.isFailure(decodeRequest(json)), JSON.stringify(json))
    }
    assert.isTrue(Result.isFailure(decodeReply({ type: "error", code: "nope", message: "" })))
    assert.isTrue(Result.isSuccess(decodeReply({ type: "error", code: "not-yours", message: "no" })))
  })

  it("the manifest's canonical text and hash; pages that fit one message", () => {
    const items = [{ path: "a/b.txt", size: 3, sha256: "0".repeat(64) }]
    assert.strictEqual(manifestJson(items), `[{"path":"a/b.txt","size":3,"sha256":"${"0".repeat(64)}"}]`)
    assert.strictEqual(manifestHash(items), createHash("sha256").update(manifestJson(items)).digest("hex"))
    assert.notStrictEqual(manifestHash(items), manifestHash([{ ...items[0]!, path: "a/c.txt" }]))
    const many = Array.from({ length: 3000 }, (_, i) => ({ path: `dir/file-${i}.dat`, size: i, sha256: "f".repeat(64) }))
    let from: number | null = 0
    const got = []
    for (let pages = 0; from !== null; pages++) {
      assert.isBelow(pages, 10)
      const page = manifestPage(many, from)
      assert.isAtMost(encodeControl({ type: "manifest", items: page.items, next: page.next }).length, MAX_PLAINTEXT_BYTES)
      got.push(...page.items)
      from = page.next
    }
    assert.deepStrictEqual(got, many)
  })

  it("a msg's file field: a well-formed offer decodes, a bad one ends nothing but itself", () => {
    const offer = { id: "3f1c", name: "report.pdf", size: 10, count: 1, sha256: "a".repeat(64) }
    const inner = decodeInner(JSON.stringify({ type: "msg", id: "m1", text: "sends a file", sentAt: "2026-01-01T00:00:00Z", file: offer }))
    assert.isTrue(Result.isSuccess(inner))
    const bad = decodeInner(JSON.stringify({ type: "msg", id: "m1", text: "x", sentAt: "x", file: { ...offer, sha256: "A" } }))
    assert.isTrue(Result.isFailure(bad))
    assert.isTrue(FileOfferSchema !== undefined)
  })
})

/** A connection on the in-memory transport: the dialer's channel and the server's. */
const connected = Effect.gen(function*() {
  const network = MemoryTransport.makeNetwork()
  const server = yield* Queue.unbounded<FrameChannel>()
  const transportOf = (address: string) => Effect.provide(Effect.gen(function*() { return yield* Transport }), MemoryTransport.layer(network, address))
  const serverSide = yield* transportOf("127.0.0.2")
  const port = yield* serverSide.serve({ host: "127.0.0.2", port: 0 }, (c) =>
    Effect.flatMap(Effect.orDie(c.open(65536)), (ch) => Effect.andThen(Queue.offer(server, ch), Effect.never)))
  const client = yield* transportOf("127.0.0.3")
  return {
    port,
    network,
    /** The server's side of the next connection. */
    served: Queue.take(server),
    dial: client.dial("127.0.0.2", port, 1000)
  }
})

describe("FrameChannel.raw", () => {
  it.live("frames, then bytes both ways; the newline of the last frame is not a byte of the stream", () =>
    Effect.gen(function*() {
      const c = yield* connected
      const dialed = yield* c.dial
      const served = yield* c.served
      yield* dialed.send({ hs: "AAAA" })
      assert.strictEqual((yield* served.next)._tag, "Handshake")
      const a = yield* dialed.raw
      const b = yield* served.raw
      yield* a.write([new Uint8Array([1, 2]), new Uint8Array([3, 4, 5])])
      assert.deepStrictEqual([...(yield* b.read(1))], [1])
      assert.deepStrictEqual([...(yield* b.read(4))], [2, 3, 4, 5])
      yield* b.write([new Uint8Array(70_000).fill(7)])
      const big = yield* a.read(70_000)
      assert.strictEqual(big.length, 70_000)
      assert.strictEqual(big[69_999], 7)
      assert.strictEqual((yield* Effect.flip(dialed.raw)).reason, "BadFrame")
    }))

  it.live("bytes read past the last frame when the stream turns binary are a protocol error; a newline is not", () =>
    Effect.gen(function*() {
      const c = yield* connected
      const early = yield* c.network.connectRaw("127.0.0.2", c.port, "127.0.0.4")
      yield* early.write('{"hs":"AAAA"}\n\u0000\u0005')
      const served = yield* c.served
      assert.strictEqual((yield* served.next)._tag, "Handshake")
      assert.strictEqual((yield* Effect.flip(served.raw)).reason, "BadFrame")
    }))

  it.live("the newline after the last frame may come in a read of its own", () =>
    Effect.gen(function*() {
      const c = yield* connected
      const split = yield* c.network.connectRaw("127.0.0.2", c.port, "127.0.0.4")
      yield* split.write('{"hs":"AAAA"}')
      const served = yield* c.served
      assert.strictEqual((yield* served.next)._tag, "Handshake")
      const raw = yield* served.raw
      yield* split.write("\n\u0001\u0002")
      assert.deepStrictEqual([...(yield* raw.read(2))], [1, 2])
      const other = yield* c.network.connectRaw("127.0.0.2", c.port, "127.0.0.5")
      yield* other.write('{"hs":"AAAA"}')
      const second = yield* c.served
      assert.strictEqual((yield* second.next)._tag, "Handshake")
      const raw2 = yield* second.raw
      yield* other.write("\u0001\u0002")
      assert.strictEqual((yield* Effect.flip(raw2.read(1))).reason, "BadFrame")
    }))
})

