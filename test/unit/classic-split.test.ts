/**
 * The pure parts of chat sending: how a text is cut for a classic peer (one frame of at most
 * 1024 bytes per read), the frame sizes used for it, and the snapshot registry's diffing.
 */
import { describe, expect, it } from "vitest"
import { classicEncrypt, classicKey24 } from "../../src/domain/Classic.ts"
import { encodePlainText } from "../../src/domain/Frames.ts"
import { encodeFrame } from "../../src/domain/Framing.ts"
import type { Peer } from "../../src/domain/Peer.ts"
import {
  CLASSIC_FRAME_LIMIT,
  classicFrameBytes,
  classicPartBytes,
  p2pFrameBytes,
  splitForClassic
} from "../../src/domain/Classic.ts"
import { snapshotChanges } from "../../src/services/PeerSnapshot.ts"

const key24 = classicKey24(12)
const wireBytes = (part: string, encrypted: boolean) =>
  Buffer.byteLength(
    encodeFrame(encrypted ? { encrypted_message: classicEncrypt(key24, part) } : { unencrypted_message: encodePlainText(part) })
  )

/** Deterministic mixed text: ASCII, 2-, 3- and 4-byte UTF-8 characters. */
const mixed = (length: number, seed = 1): string => {
  const alphabet = ["a", "b", " ", "é", "ß", "✓", "中", "🎉", "𝄞", "\n", "\""]
  let x = seed
  let out = ""
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31
    out += alphabet[x % alphabet.length]
  }
  return out
}

describe("classic frame sizes", () => {
  it("classicFrameBytes is the exact size on the wire, plain and 3DES", () => {
    for (let n = 0; n <= 1100; n += 7) {
      const text = "x".repeat(n)
      expect(classicFrameBytes(n, false)).toBe(wireBytes(text, false))
      expect(classicFrameBytes(n, true)).toBe(wireBytes(text, true))
    }
  })

  it("classicPartBytes is the largest text that fits 1024 bytes", () => {
    for (const encrypted of [false, true]) {
      const max = classicPartBytes(encrypted)
      expect(wireBytes("x".repeat(max), encrypted)).toBeLessThanOrEqual(CLASSIC_FRAME_LIMIT)
      // the next size that changes the frame does not fit
      let more = max + 1
      while (classicFrameBytes(more, encrypted) === classicFrameBytes(max, encrypted)) more++
      expect(wireBytes("x".repeat(more), encrypted)).toBeGreaterThan(CLASSIC_FRAME_LIMIT)
    }
  })
})

describe("splitForClassic", () => {
  it("keeps a short text whole (and the empty text as one empty message)", () => {
    expect(splitForClassic("hello", true)).toEqual(["hello"])
    expect(splitForClassic("", false)).toEqual([""])
    const exact = "y".repeat(classicPartBytes(false))
    expect(splitForClassic(exact, false)).toEqual([exact])
  })

  it("cuts a long mixed text into in-order parts that each fit one read, on character boundaries, as few as possible", () => {
    for (const encrypted of [false, true]) {
      for (const [length, seed] of [[900, 1], [3000, 2], [5000, 3]] as const) {
        const text = mixed(length, seed)
        const parts = splitForClassic(text, encrypted)
        expect(parts.join("")).toBe(text)
        expect(parts.length).toBeGreaterThan(1)
        const max = classicPartBytes(encrypted)
        parts.forEach((part, i) => {
          expect(part.length).toBeGreaterThan(0)
          expect(part).not.toMatch(/[\uD800-\uDBFF]$/) // never ends inside a surrogate pair
          expect(part).not.toMatch(/^[\uDC00-\uDFFF]/)
          expect(wireBytes(part, encrypted)).toBeLessThanOrEqual(CLASSIC_FRAME_LIMIT)
          // greedy: the next character would not have fitted
          const next = parts[i + 1]
          if (next !== undefined) {
            const first = [...next][0]!
            expect(Buffer.byteLength(part + first)).toBeGreaterThan(max)
          }
        })
      }
    }
  })
})

describe("p2pFrameBytes", () => {
  it("is the size of the frame between its braces, plain and classic", () => {
    const text = mixed(2000, 9)
    const id = "123e4567-e89b-12d3-a456-426614174000"
    expect(p2pFrameBytes(text, false, id, "alice")).toBe(
      Buffer.byteLength(JSON.stringify({ unencrypted_message: encodePlainText(text), id, from: "alice" }))
    )
    expect(p2pFrameBytes(text, true, id, undefined)).toBe(
      Buffer.byteLength(JSON.stringify({ encrypted_message: classicEncrypt(key24, text), id }))
    )
  })
})

describe("snapshotChanges", () => {
  const peer = (username: string, over: Partial<Peer> = {}): Peer => ({
    username,
    key: username.toLowerCase(),
    address: "10.0.0.1",
    port: 6001,
    udpPort: 0,
    proto: "p2pchat/1",
    id: undefined,
    status: "online",
    manualAway: false,
    firstSeen: new Date(0),
    lastSeen: new Date(0),
    conflict: undefined,
    signed: false,
    ...over
  })
  const map = (...peers: Array<Peer>) => new Map(peers.map((p) => [p.key, p]))

  it("reports appeared, moved, status changes and expired peers like the live registry", () => {
    const before = map(peer("bob"), peer("carol"), peer("dave"))
    const after = map(peer("bob", { address: "10.0.0.2" }), peer("carol", { status: "away" }), peer("erin"))
    expect(snapshotChanges(before, after).map((c) => `${c._tag} ${c.peer.key}`)).toEqual([
      "Moved bob",
      "StatusChanged carol",
      "Appeared erin",
      "Expired dave"
    ])
    expect(snapshotChanges(after, after)).toEqual([])
  })
})
