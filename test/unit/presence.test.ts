/**
 * Presence datagrams decoded at the edge (PROTOCOL.md 1): what is accepted, what is
 * refused, and that what a node sends always fits a classic receiver's 1024-byte read.
 */
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  decodePresence,
  encodeAnnouncement,
  encodeBye,
  MAX_DATAGRAM_BYTES,
  type PresenceDatagram,
  presenceSignedBytes,
  signedPart
} from "../../src/domain/Presence.ts"
import { generateKeyPair } from "../../src/domain/Noise.ts"
import { makeVerifier, presenceSigner } from "../../src/domain/Xeddsa.ts"

const enc = (s: string) => new TextEncoder().encode(s)
const json = (v: unknown) => enc(JSON.stringify(v))

const ID = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN-_0" // 43 base64url characters

const ok = (payload: Uint8Array): PresenceDatagram => {
  const r = decodePresence(payload)
  if (Result.isFailure(r)) throw new Error(`expected success, got failure: ${r.failure}`)
  return r.success
}

const refused = (payload: Uint8Array): string => {
  const r = decodePresence(payload)
  if (Result.isSuccess(r)) throw new Error(`expected a failure, got ${JSON.stringify(r.success)}`)
  expect(typeof r.failure).toBe("string")
  expect(r.failure.length).toBeGreaterThan(0)
  expect(r.failure).not.toMatch(/\n/) // one log line
  return r.failure
}

describe("decodePresence accepts", () => {
  it("the classic shape {username} alone, with no other fields added", () => {
    const d = ok(enc(`{"username":"alice"}`))
    expect(d).toEqual({ _tag: "Announcement", value: { username: "alice" } })
    expect(Object.keys(d.value)).toEqual(["username"])
  })

  it("the classic shape pretty-printed with spaces and newlines", () => {
    expect(ok(enc(`{\n  "username": "alice"\n}\n`)).value).toEqual({ username: "alice" })
  })

  it("the full p2pchat shape", () => {
    const full = { username: "Alice", proto: "p2pchat/1", port: 6101, status: "away", id: ID }
    expect(ok(json(full))).toEqual({ _tag: "Announcement", value: full })
  })

  it("status online, and ports at the limits 1 and 65535", () => {
    expect(ok(json({ username: "a", status: "online", port: 1 })).value).toEqual({ username: "a", status: "online", port: 1 })
    expect(ok(json({ username: "a", port: 65535 })).value).toEqual({ username: "a", port: 65535 })
  })

  it("the bye", () => {
    expect(ok(json({ bye: "alice", proto: "p2pchat/1", id: ID }))).toEqual({
      _tag: "Bye",
      value: { bye: "alice", proto: "p2pchat/1", id: ID }
    })
    expect(ok(json({ bye: "alice" }))).toEqual({ _tag: "Bye", value: { bye: "alice" } })
  })

  it("a datagram of exactly 1024 bytes", () => {
    const base = JSON.stringify({ username: "alice", pad: "" })
    const padded = JSON.stringify({ username: "alice", pad: "x".repeat(MAX_DATAGRAM_BYTES - base.length) })
    expect(enc(padded).byteLength).toBe(MAX_DATAGRAM_BYTES)
    expect(ok(enc(padded)).value).toEqual({ username: "alice" })
  })

  it("a 32-character name of multi-byte characters (counted in characters, not bytes or UTF-16 units)", () => {
    for (const ch of ["é", "中", "😀"]) {
      const name = ch.repeat(32)
      expect(ok(json({ username: name })).value).toEqual({ username: name })
      refused(json({ username: ch.repeat(33) }))
    }
  })

  it("unknown extra fields, ignored and left out of the result", () => {
    const d = ok(json({ username: "alice", proto: "p2pchat/2", color: "red", nested: { a: [1, 2] }, port: 6001 }))
    expect(d.value).toEqual({ username: "alice", proto: "p2pchat/2", port: 6001 })
    expect(Object.hasOwn(d.value, "color")).toBe(false)
    const bye = ok(json({ bye: "alice", extra: true }))
    expect(bye.value).toEqual({ bye: "alice" })
  })

  it("a __proto__ key without polluting Object.prototype, and without such a key in the result", () => {
    const payloads = [
      `{"username":"alice","__proto__":{"polluted":"yes","status":"away"}}`,
      `{"__proto__":{"polluted":"yes"},"username":"alice","constructor":{"prototype":{"polluted":"yes"}}}`,
      `{"bye":"alice","__proto__":{"polluted":"yes"}}`
    ]
    for (const p of payloads) {
      const d = ok(enc(p))
      expect(Object.hasOwn(d.value, "__proto__")).toBe(false)
      expect(Object.hasOwn(d.value, "constructor")).toBe(false)
      expect(Object.getPrototypeOf(d.value)).toBe(Object.prototype)
      expect((d.value as Record<string, unknown>)["polluted"]).toBeUndefined()
      expect((d.value as Record<string, unknown>)["status"]).toBeUndefined()
    }
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
    expect(Object.prototype).not.toHaveProperty("polluted")
  })
})

describe("decodePresence refuses", () => {
  it("an oversize datagram (1025 bytes and more), before parsing it", () => {
    const base = JSON.stringify({ username: "alice", pad: "" })
    const over = enc(JSON.stringify({ username: "alice", pad: "x".repeat(MAX_DATAGRAM_BYTES + 1 - base.length) }))
    expect(over.byteLength).toBe(MAX_DATAGRAM_BYTES + 1)
    expect(refused(over)).toMatch(/1025 bytes/)
    expect(refused(new Uint8Array(65_000).fill(0x20))).toMatch(/oversized/)
  })

  it("bytes that are not JSON", () => {
    for (const p of ["", "hello", "{", `{"username":"alice"`, `{"username":'alice'}`, "{username:alice}", `{"username":"alice"} x`]) {
      refused(enc(p))
    }
  })

  it("bytes that are not UTF-8", () => {
    const wrap = (bytes: ReadonlyArray<number>) =>
      new Uint8Array([...enc(`{"username":"al`), ...bytes, ...enc(`ice"}`)])
    for (const bad of [[0xff], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
      expect(refused(wrap(bad))).toMatch(/UTF-8/)
    }
    // Latin-1 é instead of UTF-8.
    refused(new Uint8Array([...enc(`{"username":"Ren`), 0xe9, ...enc(`"}`)]))
  })

  it("JSON that is not an object: array, number, null, string, boolean", () => {
    for (const p of [`[{"username":"alice"}]`, "[]", "42", "null", `"alice"`, "true"]) {
      refused(enc(p))
    }
  })

  it("an object that is neither an announcement nor a bye", () => {
    refused(json({}))
    refused(json({ user: "alice" }))
    refused(json({ name: "alice", proto: "p2pchat/1" }))
  })

  it("wrong types: port as a string, port 0, 70000, 1.5, -1", () => {
    for (const port of ["6001", 0, 70_000, 1.5, -1, null, 65_536]) {
      expect(refused(json({ username: "alice", port }))).toMatch(/announcement/)
    }
  })

  it("wrong types: status other than online/away, username or proto not a string", () => {
    for (const status of ["busy", "ONLINE", "", 1, null]) refused(json({ username: "alice", status }))
    for (const username of [42, null, true, ["alice"], { first: "alice" }]) refused(json({ username }))
    refused(json({ username: "alice", proto: 1 }))
    refused(json({ bye: 42 }))
  })

  it("an id that is not 43 base64url characters", () => {
    const bad = [
      ID.slice(0, 42),
      ID + "A",
      ID.slice(0, 42) + "=",
      ID.slice(0, 42) + "+",
      ID.slice(0, 42) + "/",
      ID.slice(0, 42) + " ",
      "",
      42
    ]
    for (const id of bad) {
      refused(json({ username: "alice", id }))
      refused(json({ bye: "alice", id }))
    }
  })

  it("control characters in names: \\u0000, \\n, \\t, \\u007f, \\u0085, \\u2028, \\u2029", () => {
    for (const c of ["\u0000", "\n", "\t", "\r", "\u001b", "\u007f", "\u0085", "\u2028", "\u2029"]) {
      refused(json({ username: `ali${c}ce` }))
      refused(json({ username: `alice${c}` }))
      refused(json({ bye: `ali${c}ce` }))
    }
  })

  it("an empty name, a 33-character name, and names with leading or trailing spaces", () => {
    refused(json({ username: "" }))
    refused(json({ username: "a".repeat(33) }))
    expect(ok(json({ username: "a".repeat(32) })).value).toEqual({ username: "a".repeat(32) })
    refused(json({ username: " alice" }))
    refused(json({ username: "alice " }))
    refused(json({ bye: "" }))
    refused(json({ bye: "b".repeat(33) }))
  })
})

describe("encodeAnnouncement", () => {
  const worstNames = ["😀".repeat(32), "\"".repeat(32), "\\".repeat(32), "𝔘".repeat(32)]
  const keys = generateKeyPair()
  const signer = presenceSigner(keys.privateKey)
  const sign = (bytes: Uint8Array) => Buffer.from(signer.sign(bytes)).toString("base64url")
  const ownId = Buffer.from(keys.publicKey).toString("base64url")
  const verify = makeVerifier()
  const verifies = (d: PresenceDatagram) => {
    const s = signedPart(d)!
    return verify(keys.publicKey, presenceSignedBytes(d), Buffer.from(s.sig, "base64url"))
  }
  const withoutSig = (d: PresenceDatagram) => {
    const { sig: _sig, ...rest } = d.value
    return rest
  }

  it("always fits in 1024 bytes, even with a 32-character name of 4-byte characters, decodes back, and verifies", () => {
    for (const username of worstNames) {
      for (const away of [false, true]) {
        const text = encodeAnnouncement({ username, tcpPort: 65535, away, id: ownId, ts: Number.MAX_SAFE_INTEGER }, sign)
        expect(enc(text).byteLength).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
        const d = ok(enc(text))
        expect(withoutSig(d)).toEqual({
          username, proto: "p2pchat/1", port: 65535, status: away ? "away" : "online", id: ownId, ts: Number.MAX_SAFE_INTEGER
        })
        expect(verifies(d)).toBe(true)
      }
    }
  })

  it("leaves port out when it is the default 6001; the signature covers the name, port, status, id and stamp", () => {
    const text = encodeAnnouncement({ username: "alice", tcpPort: 6001, away: false, id: ownId, ts: 5 }, sign)
    const sent = JSON.parse(text)
    expect(Object.keys(sent).sort()).toEqual(["id", "proto", "sig", "status", "ts", "username"])
    const d = ok(enc(text))
    expect(verifies(d)).toBe(true)
    for (const change of [{ username: "alicf" }, { port: 6002 }, { status: "away" }, { ts: 6 }]) {
      expect(verifies(ok(json({ ...sent, ...change })))).toBe(false)
    }
    // an announcement's signature does not pass as a bye's
    expect(verifies(ok(json({ bye: "alice", proto: "p2pchat/1", id: ownId, ts: 5, sig: sent.sig })))).toBe(false)
  })

  it("a signature without id and ts is refused at the edge; a malformed one too", () => {
    const sig = "A".repeat(86)
    expect(refused(json({ username: "alice", proto: "p2pchat/1", ts: 1, sig }))).toMatch(/signature/)
    expect(refused(json({ username: "alice", proto: "p2pchat/1", id: ID, sig }))).toMatch(/signature/)
    expect(refused(json({ bye: "alice", id: ID, sig }))).toMatch(/signature/)
    refused(json({ username: "alice", id: ID, ts: 1, sig: "short" }))
    refused(json({ username: "alice", id: ID, ts: 0, sig }))
    refused(json({ username: "alice", id: ID, ts: 1.5, sig }))
  })

  it("the bye fits too, decodes back as a bye with no username field (classic peers ignore it), and verifies", () => {
    for (const username of worstNames) {
      const text = encodeBye({ username, id: ownId, ts: 7 }, sign)
      expect(enc(text).byteLength).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES)
      expect(Object.hasOwn(JSON.parse(text), "username")).toBe(false)
      const d = ok(enc(text))
      expect(withoutSig(d)).toEqual({ bye: username, proto: "p2pchat/1", id: ownId, ts: 7 })
      expect(verifies(d)).toBe(true)
    }
  })
})
