import { describe, it, expect } from "vitest"
import { createCipheriv } from "node:crypto"
import fc from "fast-check"
import vectors from "../fixtures/classic-3des.json" with { type: "json" }
import {
  CLASSIC_WARNING,
  classicDecrypt,
  classicEncrypt,
  classicKey24,
  classicShared,
  randomClassicKey
} from "../../src/domain/Classic.ts"

const sharedOf = (v: { initiatorKey: number; responderKey: number }) =>
  classicShared(v.initiatorKey, v.responderKey)

/** Shared values whose key24 is the same DES key once parity bits are ignored. */
const SAME_EFFECTIVE_KEY: ReadonlyArray<readonly [number, number]> = [
  [4, 8],
  [5, 9]
]
const sameEffectiveKey = (x: number, y: number) =>
  x === y || SAME_EFFECTIVE_KEY.some(([p, q]) => (p === x && q === y) || (p === y && q === x))

describe("classic key derivation", () => {
  it.each(vectors.keyDerivation)(
    "classicShared($initiatorKey, $responderKey) = $shared and key24 = $key24",
    (v) => {
      expect(classicShared(v.initiatorKey, v.responderKey)).toBe(v.shared)
      expect(classicKey24(v.shared).toString("latin1")).toBe(v.key24)
    }
  )

  it("uses XOR, not exponentiation, and commutes in both parts", () => {
    for (let a = 0; a < 19; a++) {
      for (let b = 0; b < 19; b++) {
        expect(classicShared(a, b)).toBe(((2 ^ a) ^ b) % 19)
        expect(classicShared(a, b)).toBe(classicShared(b, a))
      }
    }
  })

  it("reduces the initiator's typed number mod 19 first (input 25 behaves as 6)", () => {
    expect(vectors.initiatorInputNote).toContain("input '25' sends {\"key\": 6}")
    expect(classicShared(25, 5)).toBe(classicShared(6, 5))
    expect(classicShared(25, 5)).toBe(1)
    expect(classicShared(38, 5)).toBe(classicShared(0, 5))
  })

  it("matches Python's % and ^ on negative and large integers (values computed with CPython)", () => {
    expect(classicShared(-1, 5)).toBe(2)
    expect(classicShared(3, -7)).toBe(11)
    expect(classicShared(2 ** 40, 12345678901)).toBe(0)
    expect(classicShared(-(2 ** 50), -(2 ** 45) + 3)).toBe(13)
  })

  it("always yields a shared value in 0..18", () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.maxSafeInteger(), (a, b) => {
        const s = classicShared(a, b)
        expect(Number.isInteger(s) && s >= 0 && s <= 18).toBe(true)
      }),
      { numRuns: 100 }
    )
  })

  it("rejects non-integer key parts and out-of-range shared values instead of guessing", () => {
    expect(() => classicShared(1.5, 5)).toThrow(RangeError)
    expect(() => classicShared(Number.NaN, 5)).toThrow(RangeError)
    expect(() => classicKey24(19)).toThrow(RangeError)
    expect(() => classicKey24(-1)).toThrow(RangeError)
  })

  it("keeps Python's '=' padding in the base64url key text (12 -> MTI=...)", () => {
    expect(classicKey24(12).toString("latin1")).toBe("MTI=00000000000000000000")
    for (let s = 0; s < 19; s++) expect(classicKey24(s)).toHaveLength(24)
  })

  it("randomClassicKey stays in 0..18 and covers every value", () => {
    const seen = new Set<number>()
    for (let i = 0; i < 2000; i++) {
      const k = randomClassicKey()
      expect(Number.isInteger(k) && k >= 0 && k <= 18).toBe(true)
      seen.add(k)
    }
    expect(seen.size).toBe(19)
  })
})

describe("classic 3DES-ECB vectors (pyDes)", () => {
  it.each(vectors.encryption.map((v) => ({ ...v, label: JSON.stringify(v.plaintext).slice(0, 30) })))(
    "key $key24 encrypts $label to the vector's ciphertext",
    (v) => {
      const key = classicKey24(sharedOf(v))
      expect(key.toString("latin1")).toBe(v.key24)
      expect(classicEncrypt(key, v.plaintext)).toBe(v.ciphertextBase64)
    }
  )

  it.each(vectors.encryption.map((v) => ({ ...v, label: JSON.stringify(v.plaintext).slice(0, 30) })))(
    "key $key24 decrypts the vector's ciphertext back to $label",
    (v) => {
      const key = Buffer.from(v.key24, "latin1")
      expect(classicDecrypt(key, v.ciphertextBase64)).toEqual({ ok: true, text: v.plaintext })
    }
  )

  it("decrypts the sample encrypted frame with the key from the sample key frames", () => {
    const a = (JSON.parse(vectors.frames.keyFrameFromInitiator) as { key: number }).key
    const b = (JSON.parse(vectors.frames.keyFrameFromResponder) as { key: number }).key
    const frame = JSON.parse(vectors.frames.encryptedFrame) as { encrypted_message: string }
    expect(classicDecrypt(classicKey24(classicShared(a, b)), frame.encrypted_message)).toEqual({
      ok: true,
      text: "hello"
    })
  })
})

describe("quirks of the original cipher, kept for compatibility", () => {
  it("3DES with key24 degenerates to single DES: K2 = K3 = '00000000', so only the first 8 bytes matter", () => {
    for (let s = 0; s < 19; s++) {
      const key = classicKey24(s)
      expect(key.subarray(8, 16).toString("latin1")).toBe("00000000")
      expect(key.subarray(16, 24).toString("latin1")).toBe("00000000")
      const k1 = key.subarray(0, 8)
      const tripled = Buffer.concat([k1, k1, k1])
      expect(classicEncrypt(tripled, "hello classic")).toBe(classicEncrypt(key, "hello classic"))
    }
  })

  it("shared 4/8 and 5/9 are the same effective DES key (N and O differ only in the ignored parity bit)", () => {
    for (const [x, y] of SAME_EFFECTIVE_KEY) {
      expect(classicKey24(x).equals(classicKey24(y))).toBe(false)
      const b64 = classicEncrypt(classicKey24(x), "hello")
      expect(classicEncrypt(classicKey24(y), "hello")).toBe(b64)
      expect(classicDecrypt(classicKey24(y), b64)).toEqual({ ok: true, text: "hello" })
    }
    // every other pair of shared values gives a different ciphertext
    const distinct = new Set(Array.from({ length: 19 }, (_, s) => classicEncrypt(classicKey24(s), "hello")))
    expect(distinct.size).toBe(19 - SAME_EFFECTIVE_KEY.length)
  })

  it("pads a whole extra block when the plaintext is a multiple of 8 bytes (pyDes PAD_PKCS5 = PKCS#7)", () => {
    const key = classicKey24(4)
    expect(Buffer.from(classicEncrypt(key, ""), "base64")).toHaveLength(8)
    expect(Buffer.from(classicEncrypt(key, "8 bytes!"), "base64")).toHaveLength(16)
    expect(Buffer.from(classicEncrypt(key, "7 bytes"), "base64")).toHaveLength(8)
  })
})

describe("classic decryption failures are values, never exceptions", () => {
  it("every vector decrypted under every other effective key is rejected (no garbage text)", () => {
    let rejected = 0
    let total = 0
    for (const v of vectors.encryption) {
      const right = sharedOf(v)
      for (let s = 0; s < 19; s++) {
        if (sameEffectiveKey(s, right)) continue
        const result = classicDecrypt(classicKey24(s), v.ciphertextBase64)
        total++
        if (result.ok) expect(result.text).not.toBe(v.plaintext)
        else rejected++
      }
    }
    // Deterministic for these fixed vectors: the padding + UTF-8 checks catch all 801.
    expect(total).toBe(801)
    expect(rejected).toBe(total)
  })

  it("a wrong key on a known vector fails with a reason", () => {
    const v = vectors.encryption.find((e) => e.plaintext === "hello" && e.key24.startsWith("NA=="))!
    const result = classicDecrypt(classicKey24(0), v.ciphertextBase64)
    expect(result.ok).toBe(false)
    if (!result.ok) expect(result.reason).toMatch(/wrong key/)
  })

  it("garbage, url-safe, unpadded, whitespace or empty base64 fails cleanly", () => {
    const key = classicKey24(4)
    const inputs = [
      "not base64 at all!!",
      "RKvK0Hgfw7c",
      "RKvK0Hgfw7c==",
      " RKvK0Hgfw7c=",
      "RKvK0Hgf\nw7c=",
      "8iOyUR9zDVYI14YQjLL_Ww==",
      "",
      "%%%%"
    ]
    for (const input of inputs) {
      const result = classicDecrypt(key, input)
      expect(result.ok, JSON.stringify(input)).toBe(false)
      if (!result.ok) expect(result.reason.length).toBeGreaterThan(0)
    }
  })

  it("a ciphertext that is not a multiple of 8 bytes fails cleanly", () => {
    const result = classicDecrypt(classicKey24(4), Buffer.alloc(12).toString("base64"))
    expect(result).toMatchObject({ ok: false })
  })

  it("bad PKCS#5 padding fails cleanly (pad byte 0, pad byte 9, inconsistent pad bytes)", () => {
    const key = classicKey24(4)
    for (const block of [
      Buffer.from("abcdefg\x00", "latin1"),
      Buffer.from("abcdefg\x09", "latin1"),
      Buffer.from("abcdef\x03\x02", "latin1"),
      Buffer.from("abcde\x01\x03\x03", "latin1")
    ]) {
      expect(classicDecrypt(key, rawEncrypt(key, block))).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/padding/)
      })
    }
  })

  it("correctly padded plaintext that is not UTF-8 fails cleanly", () => {
    const key = classicKey24(4)
    const block = Buffer.from([0xff, 0xfe, 0xc3, 5, 5, 5, 5, 5])
    expect(classicDecrypt(key, rawEncrypt(key, block))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/UTF-8/)
    })
  })

  it("a key that is not 24 bytes fails cleanly on decrypt and throws RangeError on encrypt", () => {
    expect(classicDecrypt(Buffer.alloc(8), "RKvK0Hgfw7c=")).toMatchObject({ ok: false })
    expect(() => classicEncrypt(Buffer.alloc(8), "x")).toThrow(RangeError)
  })
})

describe("classic round trip", () => {
  it("decrypt(encrypt(text)) = text for random unicode strings and every key", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 18 }), fc.string({ unit: "binary", maxLength: 200 }), (shared, text) => {
        const key = classicKey24(shared)
        const b64 = classicEncrypt(key, text)
        expect(Buffer.from(b64, "base64").length % 8).toBe(0)
        expect(classicDecrypt(key, b64)).toEqual({ ok: true, text })
      }),
      { numRuns: 100 }
    )
  })
})

describe("classic warning", () => {
  it("is one plain sentence saying classic encryption is not secure", () => {
    expect(CLASSIC_WARNING).toMatch(/NOT secure/)
    expect(CLASSIC_WARNING.split(/[.!?](\s|$)/).filter((s) => s !== undefined && s.trim() !== "")).toHaveLength(1)
  })
})

/** Encrypts already-padded bytes with the same algorithm, to forge bad plaintexts. */
function rawEncrypt(key: Buffer, padded: Buffer): string {
  const cipher = createCipheriv("des-ede3-ecb", key, null)
  cipher.setAutoPadding(false)
  return Buffer.concat([cipher.update(padded), cipher.final()]).toString("base64")
}
