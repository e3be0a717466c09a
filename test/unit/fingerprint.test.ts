import { createHash } from "node:crypto"
import { describe, it, expect } from "vitest"
import fc from "fast-check"
import vectors from "../fixtures/fingerprint.json" with { type: "json" }
import { fingerprint } from "../../src/domain/Fingerprint.ts"

describe("fingerprint (PROTOCOL.md Trust)", () => {
  it.each(vectors.vectors)("key $publicKeyHex has fingerprint $fingerprint", (v) => {
    expect(fingerprint(Buffer.from(v.publicKeyHex, "hex"))).toBe(v.fingerprint)
  })

  it("accepts a plain Uint8Array as well as a Buffer", () => {
    const v = vectors.vectors[1]!
    expect(fingerprint(new Uint8Array(Buffer.from(v.publicKeyHex, "hex")))).toBe(v.fingerprint)
  })

  it("is always 12 zero-padded 5-digit groups separated by single spaces", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
        expect(fingerprint(key)).toMatch(/^\d{5}( \d{5}){11}$/)
      }),
      { numRuns: 100 }
    )
  })

  it("matches an independent BigInt computation of SHA-512 chunks mod 100000", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
        const digest = createHash("sha512").update(key).digest("hex")
        const expected = Array.from({ length: 12 }, (_, i) =>
          (BigInt("0x" + digest.slice(i * 10, i * 10 + 10)) % 100000n).toString().padStart(5, "0")
        ).join(" ")
        expect(fingerprint(key)).toBe(expected)
      }),
      { numRuns: 100 }
    )
  })

  it("changes when a single bit of the key changes", () => {
    const key = Buffer.from(vectors.vectors[2]!.publicKeyHex, "hex")
    const flipped = Buffer.from(key)
    flipped[31] = flipped[31]! ^ 1
    expect(fingerprint(flipped)).not.toBe(fingerprint(key))
  })

  it("rejects keys that are not 32 bytes", () => {
    expect(() => fingerprint(new Uint8Array(31))).toThrow(RangeError)
    expect(() => fingerprint(new Uint8Array(33))).toThrow(RangeError)
  })
})
