/**
 * Security regression tests (issue 6, item 6, the input parts): oversized and deeply nested
 * JSON, `__proto__` and `constructor` keys, invalid UTF-8, and base64 with garbage, sent as
 * real datagrams and over real TCP connections to one in-process node (test/fuzz/node.ts:
 * the respond role on loopback, its log lines captured). Each must be refused where the
 * rules refuse it, logged, counted, and harmless: nothing stored or registered from it, no
 * prototype polluted, and the node still serves a well-behaved peer afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { JsonSplitter } from "../../src/domain/Framing.ts"
import { createHandshake, generateKeyPair, type Transport } from "../../src/domain/Noise.ts"
import { type FuzzNode, startFuzzNode } from "../fuzz/node.ts"
import { Client } from "../fuzz/tcp.ts"
import { pollUntil, type UdpSender, udpSender } from "../fuzz/udp.ts"

const enc = new TextEncoder()
const b64 = (text: string | Uint8Array) => Buffer.from(text).toString("base64")
const frame = (o: unknown) => enc.encode(JSON.stringify(o) + "\n")
const bytesOf = (...parts: ReadonlyArray<string | ReadonlyArray<number>>) =>
  Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p))))

let node: FuzzNode
let udp: UdpSender
/** Warnings and errors about each connection, by the client's port. */
const logged = new Map<number, Array<string>>()
const protoNames = Object.getOwnPropertyNames(Object.prototype).sort().join(",")

beforeAll(async () => {
  node = await startFuzzNode({
    name: "hostile",
    onLog: (line) => {
      const m = /127\.0\.0\.1:(\d+)/.exec(line.message)
      if (m === null || line.message.startsWith("discovery:")) return
      logged.set(Number(m[1]), [...(logged.get(Number(m[1])) ?? []), line.message])
    }
  })
  udp = await udpSender(node.udpPort)
})

afterAll(async () => {
  await udp?.close()
  await node?.close()
})

const notPolluted = () => {
  expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
  expect(Object.getOwnPropertyNames(Object.prototype).sort().join(",")).toBe(protoNames)
}

// ---------------------------------------------------------------------------------------------
// Datagrams

/** Sends one datagram and returns how Discovery counted it. */
const datagram = async (payload: Uint8Array | string) => {
  const before = node.discoveryStats()
  expect(await udp.send(typeof payload === "string" ? enc.encode(payload) : payload)).toBe(true)
  expect(await pollUntil(() => node.discoveryStats().received === before.received + 1, 3000), "Discovery counted it").toBe(true)
  const after = node.discoveryStats()
  return {
    accepted: after.accepted - before.accepted,
    rejected: after.rejected - before.rejected,
    reasons: Object.keys(after.rejectedByReason).filter((k) => after.rejectedByReason[k] !== before.rejectedByReason[k])
  }
}

let liveness = 0
/** The node still serves: a valid announcement is registered, a well-behaved peer gets its ack. */
const stillServes = async () => {
  const name = `alive-${++liveness}`
  expect((await datagram(JSON.stringify({ username: name, proto: "p2pchat/1", port: 4000 + liveness }))).accepted).toBe(1)
  expect((await node.lookup(name))?.port).toBe(4000 + liveness)
  const r = await converse([frame({ unencrypted_message: b64(`still there ${liveness}`), id: `alive-${liveness}`, from: "checker" })], { acks: 1 })
  expect(r.acks).toEqual([`alive-${liveness}`])
  expect(r.refusal).toEqual([])
  notPolluted()
}

// ---------------------------------------------------------------------------------------------
// Connections

interface Conversation {
  readonly client: Client
  readonly acks: ReadonlyArray<string>
  readonly keys: ReadonlyArray<unknown>
  /** The responder's log lines about this connection. */
  readonly refusal: ReadonlyArray<string>
  /** rejectedByReason entries that grew. */
  readonly reasons: ReadonlyArray<string>
}

/**
 * Writes `chunks` on a new connection. Refused input: waits for the responder to hang up.
 * Otherwise (`acks`): waits for that many acks, then hangs up itself.
 */
const converse = async (chunks: ReadonlyArray<Uint8Array>, opts: { readonly acks?: number; readonly keys?: number } = {}): Promise<Conversation> => {
  const before = node.responderStats()
  const client = await Client.connect(node.tcpPort)
  const acks = () => client.lines.flatMap((l) => (typeof (l as { ack?: unknown }).ack === "string" ? [(l as { ack: string }).ack] : []))
  for (const c of chunks) client.write(c)
  if (opts.acks !== undefined || opts.keys !== undefined) {
    await client.waitFor(
      () => client.closed || (acks().length >= (opts.acks ?? 0) && client.lines.length >= (opts.acks ?? 0) + (opts.keys ?? 0)),
      5000
    )
    client.end()
  }
  expect(await client.waitFor(() => client.closed, 5000), "the responder hung up").toBe(true)
  expect(await pollUntil(() => node.responderStats().active === before.active, 3000)).toBe(true)
  const after = node.responderStats()
  const refusal = logged.get(client.localPort) ?? []
  logged.delete(client.localPort)
  // Every logged refusal is counted, and nothing else is.
  expect(after.rejected - before.rejected).toBe(refusal.length > 0 ? 1 : 0)
  return {
    client,
    acks: acks(),
    keys: client.lines.flatMap((l) => (Object.hasOwn(l as object, "key") ? [(l as { key: unknown }).key] : [])),
    refusal,
    reasons: Object.keys(after.rejectedByReason).filter((k) => after.rejectedByReason[k] !== before.rejectedByReason[k])
  }
}

const rowsWith = async (pred: (r: { id: string; peer: string; text: string; mode: string }) => boolean) =>
  (await node.history()).filter(pred)

/** A secure session (Noise XX) up to a completed handshake, as a p2pchat initiator makes it. */
const secureSession = async (username: string) => {
  const client = await Client.connect(node.tcpPort)
  const hs = createHandshake({ initiator: true, prologue: enc.encode("p2pchat/1"), staticKey: generateKeyPair() })
  client.write(frame({ proto: "p2pchat/1", hs: b64(hs.writeMessage()) }))
  expect(await client.waitFor(() => client.lines.length > 0 || client.closed, 5000)).toBe(true)
  hs.readMessage(Buffer.from((client.lines[0] as { hs: string }).hs, "base64"))
  client.write(frame({ hs: b64(hs.writeMessage(enc.encode(JSON.stringify({ username })))) }))
  const transport: Transport = hs.split()
  const ct = (inner: unknown) => b64(transport.encrypt(enc.encode(JSON.stringify(inner))))
  const acks = () =>
    client.lines.slice(1).map((l) => JSON.parse(Buffer.from(transport.decrypt(Buffer.from((l as { ct: string }).ct, "base64"))).toString()).id as string)
  return { client, ct, acks }
}

/** Ends a test connection the responder refused; returns its log lines. */
const refusedSession = async (client: Client) => {
  expect(await client.waitFor(() => client.closed, 5000), "the responder hung up").toBe(true)
  await pollUntil(() => node.responderStats().active === 0, 3000)
  const lines = logged.get(client.localPort) ?? []
  logged.delete(client.localPort)
  return lines
}

// ---------------------------------------------------------------------------------------------

describe("hostile datagrams into Discovery", () => {
  it("an oversized datagram is refused and counted; one of exactly 1024 bytes is taken", async () => {
    const big = JSON.stringify({ username: "big-one", pad: "x".repeat(2000) })
    const r = await datagram(big)
    expect(r).toMatchObject({ accepted: 0, rejected: 1 })
    expect(await node.lookup("big-one")).toBeUndefined()
    const head = JSON.stringify({ username: "exactly-1024", pad: "" })
    const exact = head.replace("\"pad\":\"\"", `"pad":"${"y".repeat(1024 - head.length)}"`)
    expect(enc.encode(exact).length).toBe(1024)
    expect(await datagram(exact)).toMatchObject({ accepted: 1, rejected: 0 })
    await stillServes()
  })

  it("deeply nested JSON: as the username it is refused; in an unknown field it is ignored and harmless (1024 bytes bound the depth)", async () => {
    const deep = (n: number, inner: string) => "[".repeat(n) + inner + "]".repeat(n)
    expect(await datagram(`{"username":${deep(500, "\"x\"")}}`)).toMatchObject({ accepted: 0, rejected: 1 })
    const r = await datagram(`{"username":"deep-field","extra":${deep(480, "1")}}`)
    // Unknown fields are ignored (PROTOCOL.md): the announcement counts, the nesting leaves no trace.
    expect(r).toMatchObject({ accepted: 1, rejected: 0 })
    const peer = await node.lookup("deep-field")
    expect(peer).toBeDefined()
    expect(Object.keys(peer!)).not.toContain("extra")
    // Deeper than fits 1024 bytes: refused as oversized, never parsed.
    expect(await datagram(`{"username":"too-deep","x":${deep(30_000, "1")}}`)).toMatchObject({ accepted: 0, rejected: 1 })
    expect(await node.lookup("too-deep")).toBeUndefined()
    await stillServes()
  })

  it("__proto__ and constructor keys pollute nothing: a username hidden under __proto__ is refused, the names themselves are plain names", async () => {
    expect(await datagram("{\"__proto__\":{\"username\":\"evil\",\"polluted\":true}}")).toMatchObject({ accepted: 0, rejected: 1 })
    expect(await node.lookup("evil")).toBeUndefined()
    notPolluted()
    const r = await datagram("{\"username\":\"proto-keys\",\"port\":4999,\"__proto__\":{\"polluted\":1,\"port\":1},\"constructor\":{\"prototype\":{\"polluted\":1}}}")
    expect(r).toMatchObject({ accepted: 1 })
    const peer = await node.lookup("proto-keys")
    expect(peer?.port).toBe(4999)
    expect(Object.hasOwn(peer!, "polluted")).toBe(false)
    notPolluted()
    for (const name of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      expect(await datagram(JSON.stringify({ username: name, proto: "p2pchat/1", port: 4321 }))).toMatchObject({ accepted: 1 })
      expect((await node.lookup(name))?.username).toBe(name)
    }
    expect(await datagram(JSON.stringify({ bye: "__proto__", proto: "p2pchat/1" }))).toMatchObject({ accepted: 1 })
    expect(await node.lookup("__proto__")).toBeUndefined()
    expect((await node.lookup("constructor"))?.port).toBe(4321)
    notPolluted()
    await stillServes()
  })

  it("invalid UTF-8 is refused and counted: overlong, surrogate, out of range, lone continuation, truncated", async () => {
    const traps = [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe2, 0x82], [0xff]]
    for (const trap of traps) {
      const r = await datagram(bytesOf("{\"username\":\"utf", trap, "\"}"))
      expect(r, JSON.stringify(trap)).toMatchObject({ accepted: 0, rejected: 1 })
    }
    expect((await node.peers()).filter((p) => p.username.startsWith("utf"))).toEqual([])
    await stillServes()
  })

  it("invisible and format characters in a username are refused and counted: bob\\u200b is not bob", async () => {
    for (const name of ["bob\u200b", "bob\u202e", "\u3164", "bob\u{e0001}", "bob\ufe0f"]) {
      expect(await datagram(JSON.stringify({ username: name })), JSON.stringify(name)).toMatchObject({ accepted: 0, rejected: 1 })
    }
    expect((await node.peers()).filter((p) => p.username.startsWith("bob"))).toEqual([])
    await stillServes()
  })

  it("control characters and terminal escapes in a username are refused", async () => {
    for (const name of ["a\u001b[2Jb", "tab\there", "nul\u0000", "line\u2028sep", "c1\u0085"]) {
      expect(await datagram(JSON.stringify({ username: name })), JSON.stringify(name)).toMatchObject({ accepted: 0, rejected: 1 })
    }
    await stillServes()
  })
})

describe("hostile frames into the Responder", () => {
  it("a frame over 64 KiB ends the connection (FrameTooLarge, logged, counted); nothing from it is stored", async () => {
    const text = JSON.stringify({ unencrypted_message: b64("big"), id: "too-large-1", pad: "z".repeat(70_000) })
    const r = await converse([enc.encode(text)])
    expect(r.refusal.length).toBeGreaterThan(0)
    expect(r.reasons).toEqual(["FrameTooLarge"])
    expect(r.acks).toEqual([])
    expect(await rowsWith((x) => x.id === "too-large-1")).toEqual([])
    await stillServes()
  })

  it("JSON nested deeper than 64 levels ends the connection (NotJson); 64 levels is still a frame", async () => {
    const nest = (levels: number) => "[".repeat(levels) + "]".repeat(levels)
    // The frame object is level 1: 63 more levels inside it make 64.
    const ok = await converse([enc.encode(`{"unencrypted_message":"${b64("deep ok")}","id":"deep-64","x":${nest(63)}}\n`)], { acks: 1 })
    expect(ok.acks).toEqual(["deep-64"])
    expect(ok.refusal).toEqual([])
    const bad = await converse([enc.encode(`{"unencrypted_message":"${b64("deep bad")}","id":"deep-65","x":${nest(64)}}\n`)])
    expect(bad.reasons).toEqual(["NotJson"])
    expect(bad.refusal.join(" ")).toContain("nested too deeply")
    expect(bad.acks).toEqual([])
    expect(await rowsWith((x) => x.id === "deep-65")).toEqual([])
    const huge = await converse([enc.encode(`{"unencrypted_message":"x","x":${nest(100_000)}}`)])
    expect(huge.reasons).toEqual(["NotJson"])
    await stillServes()
  })

  it("__proto__ and constructor keys in frames pollute nothing; extra keys are ignored; a frame hidden under __proto__ is refused", async () => {
    const r = await converse(
      [enc.encode("{\"unencrypted_message\":\"aGk=\",\"id\":\"hp-1\",\"__proto__\":{\"polluted\":1,\"id\":\"x\"},\"constructor\":{\"prototype\":{\"polluted\":1}}}\n")],
      { acks: 1 }
    )
    expect(r.acks).toEqual(["hp-1"])
    expect((await rowsWith((x) => x.id === "hp-1")).map((x) => x.text)).toEqual(["hi"])
    notPolluted()
    const hidden = await converse([enc.encode("{\"__proto__\":{\"unencrypted_message\":\"aGk=\",\"id\":\"hp-2\"}}\n")])
    expect(hidden.reasons).toEqual(["BadFrame"])
    expect(hidden.acks).toEqual([])
    expect(await rowsWith((x) => x.id === "hp-2")).toEqual([])
    const names = await converse([frame({ unencrypted_message: b64("proto names"), id: "__proto__", from: "constructor" })], { acks: 1 })
    expect(names.acks).toEqual(["__proto__"])
    expect((await rowsWith((x) => x.id === "__proto__")).map((x) => [x.peer, x.text])).toEqual([["constructor", "proto names"]])
    const key = await converse([enc.encode("{\"key\":5,\"__proto__\":{\"key\":\"x\"}}\n")], { keys: 1 })
    expect(key.keys).toHaveLength(1)
    expect(key.refusal).toEqual([])
    notPolluted()
    await stillServes()
  })

  it("invalid UTF-8 in a frame ends the connection (NotJson); nothing from it is stored", async () => {
    for (const [i, trap] of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf5, 0x80, 0x80, 0x80]].entries()) {
      const r = await converse([bytesOf("{\"unencrypted_message\":\"", trap, `","id":"bad-utf8-${i}"}\n`)])
      expect(r.reasons, JSON.stringify(trap)).toEqual(["NotJson"])
      expect(r.acks).toEqual([])
    }
    expect(await rowsWith((x) => x.id.startsWith("bad-utf8-"))).toEqual([])
    await stillServes()
  })

  it("unencrypted_message that is not base64 of UTF-8 is taken as the text itself (PROTOCOL.md), and acked", async () => {
    const values = ["aGk=!!", "not base64 at all", "aGVsbG8", "//79", "====", "a\\b\"c", "ZZZ=", "4pyT\n"]
    const r = await converse(values.map((v, i) => frame({ unencrypted_message: v, id: `garbage-b64-${i}`, from: "b64" })), { acks: values.length })
    expect(r.acks).toEqual(values.map((_, i) => `garbage-b64-${i}`))
    expect(r.refusal).toEqual([])
    const rows = await rowsWith((x) => x.id.startsWith("garbage-b64-"))
    expect(rows.map((x) => x.text)).toEqual(values)
    await stillServes()
  })

  it("garbage in encrypted_message is refused (DecryptFailed, or NoKey before a key exchange); nothing is stored", async () => {
    for (const [i, value] of ["garbage!!", "AAAAAAAAAAA=", "", "QUJD", "A".repeat(5000)].entries()) {
      const r = await converse([frame({ key: 3 })], { keys: 1 })
      expect(r.keys).toHaveLength(1)
      const c = await converse([frame({ key: 3 }), frame({ encrypted_message: value, id: `enc-garbage-${i}` })])
      expect(c.reasons, value.slice(0, 20)).toEqual(["DecryptFailed"])
      expect(c.acks).toEqual([])
    }
    const nokey = await converse([frame({ encrypted_message: "AAAAAAAAAAA=", id: "enc-nokey" })])
    expect(nokey.reasons).toEqual(["NoKey"])
    expect(await rowsWith((x) => x.id.startsWith("enc-"))).toEqual([])
    await stillServes()
  })

  it("garbage in hs is refused before any answer: not base64, too short, no proto, another proto", async () => {
    const m1 = b64(createHandshake({ initiator: true, prologue: enc.encode("p2pchat/1"), staticKey: generateKeyPair() }).writeMessage())
    const cases: ReadonlyArray<readonly [object, string]> = [
      [{ proto: "p2pchat/1", hs: "!!!" }, "BadFrame"],
      [{ proto: "p2pchat/1", hs: "AA AA" }, "BadFrame"],
      [{ proto: "p2pchat/1", hs: m1.replace(/=*$/, "").replace(/\+/g, "-") + "_" }, "BadFrame"],
      [{ proto: "p2pchat/1", hs: "AAAA" }, ""],
      [{ proto: "p2pchat/1", hs: "" }, ""],
      [{ proto: "p2pchat/1", hs: b64(new Uint8Array(70_000)) }, ""],
      [{ hs: m1 }, ""],
      [{ proto: "p2pchat/2", hs: m1 }, ""]
    ]
    for (const [f, reason] of cases) {
      const r = await converse([frame(f)])
      const label = JSON.stringify(f).slice(0, 60)
      expect(r.refusal.length, label).toBeGreaterThan(0)
      if (reason !== "") expect(r.reasons, label).toEqual([reason])
      expect(r.client.lines, `${label}: no message 2`).toEqual([])
    }
    await stillServes()
  })

  it("garbage in ct after a completed handshake ends the session (refused, logged, counted); what came before it stays, nothing after", async () => {
    const garbage = ["!!!", "", "AAAAAAAAAAAAAAAAAAAAAA==", "AAAA", "-_-_", "QUJD\nREVG"]
    for (const [i, ct] of garbage.entries()) {
      const user = `ct-garbage-${i}`
      const s = await secureSession(user)
      s.client.write(frame({ ct: s.ct({ type: "msg", id: `ctg-${i}-ok`, text: "before", sentAt: new Date().toISOString() }) }))
      await s.client.waitFor(() => s.client.lines.length >= 2 || s.client.closed, 5000)
      s.client.write(frame({ ct }))
      // A valid frame after the garbage must not be accepted either.
      s.client.write(frame({ ct: s.ct({ type: "msg", id: `ctg-${i}-after`, text: "after", sentAt: new Date().toISOString() }) }))
      const lines = await refusedSession(s.client)
      expect(lines.length, JSON.stringify(ct)).toBeGreaterThan(0)
      expect(s.acks()).toEqual([`ctg-${i}-ok`])
      const rows = await rowsWith((x) => x.id.startsWith(`ctg-${i}-`))
      expect(rows.map((x) => [x.peer, x.text, x.mode])).toEqual([[user, "before", "noise"]])
    }
    await stillServes()
  })
})

describe("bugs the fuzzer found, kept fixed", () => {
  it("a refusal's log line carries the peer's control characters (terminal escapes reach stderr)", async () => {
    const r = await converse([enc.encode("{\"\\u001b]0;pwned\\u0007\\u001b[2J\":1}\n")])
    expect(r.reasons).toEqual(["BadFrame"])
    // eslint-disable-next-line no-control-regex
    expect(r.refusal.join("\n")).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/)
  })

  it("the splitter does not take time quadratic in a push's size on a string full of escapes", () => {
    // Against a baseline in the same run: a string of the same size without escapes. The
    // quadratic scan was ~10,000 times slower; linear work stays within a small factor.
    const time = (bytes: Uint8Array) => {
      const runs: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const started = performance.now()
        new JsonSplitter().push(bytes)
        runs.push(performance.now() - started)
      }
      return runs.sort((a, b) => a - b)[2]!
    }
    const escapes = time(enc.encode("{\"k\":\"" + "\\u0000".repeat(10_000) + "\"}"))
    const plain = time(enc.encode("{\"k\":\"" + "abcdef".repeat(10_000) + "\"}"))
    expect(escapes / Math.max(plain, 0.01)).toBeLessThan(200)
  })
})
