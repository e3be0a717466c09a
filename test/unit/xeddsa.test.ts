import {
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  verify
} from "node:crypto"
import { describe, expect, it } from "vitest"
import { edPublicOfX25519, makeVerifier, presenceSigner } from "../../src/domain/Xeddsa.ts"

// ---------------------------------------------------------------------------------------------
// Independent helpers: everything here comes from node:crypto or plain BigInt, not from Xeddsa.ts

const P = (1n << 255n) - 19n
const L = (1n << 252n) + 27742317777372353535851937790883648493n

const fromB64 = (text: string | undefined): Uint8Array => new Uint8Array(Buffer.from(text ?? "", "base64url"))
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

const toLE32 = (n: bigint): Uint8Array => new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse())
const fromLE = (bytes: Uint8Array): bigint => BigInt("0x" + (Buffer.from(bytes).reverse().toString("hex") || "0"))

type JwkEncoding = { readonly format: "jwk" }
/** Generator output as JWK straight away (exporting a generated KeyObject can hang Node 20, see Dh.ts). */
const generate = generateKeyPairSync as unknown as (
  type: "ed25519" | "x25519",
  options: { publicKeyEncoding: JwkEncoding; privateKeyEncoding: JwkEncoding }
) => { publicKey: JsonWebKey; privateKey: JsonWebKey }
const JWK_BOTH = { publicKeyEncoding: { format: "jwk" }, privateKeyEncoding: { format: "jwk" } } as const

const x25519Pair = (): { readonly priv: Uint8Array; readonly pub: Uint8Array } => {
  const { privateKey } = generate("x25519", JWK_BOTH)
  return { priv: fromB64(privateKey.d), pub: fromB64(privateKey.x) }
}

/** node's X25519 KeyObject for a raw private scalar (imported, so exporting it is safe). */
const x25519Private = (scalar: Uint8Array): KeyObject =>
  createPrivateKey({
    key: Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), scalar]),
    format: "der",
    type: "pkcs8"
  })

const x25519PublicOf = (scalar: Uint8Array): Uint8Array =>
  fromB64(createPublicKey(x25519Private(scalar)).export({ format: "jwk" }).x)

const x25519Public = (u: Uint8Array): KeyObject =>
  createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64(u) }, format: "jwk" })

/** node's X25519 shared secret of a raw private key and a raw public key. */
const x25519Agree = (priv: Uint8Array, pub: Uint8Array): Uint8Array =>
  new Uint8Array(diffieHellman({ privateKey: x25519Private(priv), publicKey: x25519Public(pub) }))

const edKeyObject = (edPublic: Uint8Array): KeyObject =>
  createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64(edPublic) }, format: "jwk" })

const withBit = (bytes: Uint8Array, bit: number): Uint8Array => {
  const out = new Uint8Array(bytes)
  out[bit >> 3] ^= 1 << (bit & 7)
  return out
}

const withS = (signature: Uint8Array, s: bigint): Uint8Array => {
  const out = new Uint8Array(signature)
  out.set(toLE32(s), 32)
  return out
}

const powMod = (b: bigint, e: bigint): bigint => {
  let result = 1n
  let base = b % P
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) result = (result * base) % P
    base = (base * base) % P
  }
  return result
}

/** A u whose v^2 = u^3 + 486662u^2 + u has no root: a point of the twist, not of Curve25519. */
const twistU = (): Uint8Array => {
  for (;;) {
    const u = fromLE(randomBytes(32)) % P
    if (powMod(((u * u * u + 486662n * u * u + u) % P), (P - 1n) / 2n) === P - 1n) return toLE32(u)
  }
}

// ---------------------------------------------------------------------------------------------

describe("edPublicOfX25519: Montgomery u to Edwards y", () => {
  it("matches node's Ed25519 key for the same secret scalar (sign bit cleared), over 50 seeds", () => {
    const signBits = new Set<number>()
    for (let i = 0; i < 50; i++) {
      const { privateKey } = generate("ed25519", JWK_BOTH)
      const edPublic = fromB64(privateKey.x)
      // Ed25519's secret scalar is SHA-512(seed)[0..32]; X25519 clamps it the same way.
      const scalar = createHash("sha512").update(fromB64(privateKey.d)).digest().subarray(0, 32)
      const u = x25519PublicOf(scalar)
      const cleared = new Uint8Array(edPublic)
      cleared[31] &= 0x7f
      signBits.add(edPublic[31]! >> 7)
      expect(b64(edPublicOfX25519(u)!)).toBe(b64(cleared))
      if ((edPublic[31]! & 0x80) === 0) expect(b64(edPublicOfX25519(u)!)).toBe(b64(edPublic))
      // The signer reaches the same key from the scalar alone, whatever the sign of a * B.
      expect(b64(presenceSigner(scalar).edPublicKey)).toBe(b64(cleared))
    }
    expect([...signBits].sort()).toEqual([0, 1])
  })

  it("refuses p - 1 (u + 1 = 0), u >= p and a set top bit: a key has one encoding", () => {
    const { pub } = x25519Pair()
    expect(edPublicOfX25519(toLE32(P - 1n))).toBeUndefined()
    expect(edPublicOfX25519(toLE32(P))).toBeUndefined()
    expect(edPublicOfX25519(toLE32(P + 2n))).toBeUndefined()
    expect(edPublicOfX25519(toLE32((1n << 255n) - 1n))).toBeUndefined()
    expect(edPublicOfX25519(new Uint8Array(32).fill(0xff))).toBeUndefined()
    expect(edPublicOfX25519(withBit(pub, 255))).toBeUndefined()
    expect(edPublicOfX25519(toLE32(P - 2n))).toBeInstanceOf(Uint8Array)
  })

  it("refuses each low-order u, those node's X25519 also refuses (all-zero secret)", () => {
    const { priv } = x25519Pair()
    const lowOrder = [
      0n,
      1n,
      P - 1n,
      325606250916557431795983626356110631294008115727848805560023387167927233504n,
      39382357235489614581723060781553021112529911719440698176882885853963445705823n
    ]
    for (const n of lowOrder) {
      const u = toLE32(n)
      expect(() => x25519Agree(priv, u)).toThrow()
      expect(edPublicOfX25519(u)).toBeUndefined()
    }
  })

  it("refuses wrong lengths and non-bytes", () => {
    for (const n of [0, 31, 33, 64]) expect(edPublicOfX25519(new Uint8Array(n))).toBeUndefined()
    expect(edPublicOfX25519("x".repeat(32) as unknown as Uint8Array)).toBeUndefined()
  })
})

describe("presenceSigner and makeVerifier", () => {
  it("over 50 node key pairs: signatures pass node's Ed25519 verify and the verifier, tampering fails", () => {
    const verifier = makeVerifier()
    const pairs = Array.from({ length: 50 }, x25519Pair)
    pairs.forEach(({ priv, pub }, i) => {
      const signer = presenceSigner(priv)
      expect(b64(signer.edPublicKey)).toBe(b64(edPublicOfX25519(pub)!))
      const message = randomBytes(1 + (i % 200))
      const signature = signer.sign(message)
      expect(signature.byteLength).toBe(64)
      expect(verify(null, message, edKeyObject(signer.edPublicKey), signature)).toBe(true)
      expect(verifier(pub, message, signature)).toBe(true)
      for (const bit of [0, 7, (message.byteLength * 8) - 1, (i * 13) % (message.byteLength * 8)]) {
        expect(verifier(pub, withBit(message, bit), signature)).toBe(false)
      }
      for (const bit of [0, 100, 254, 255, 256, 300, 400, 500, 511]) {
        expect(verifier(pub, message, withBit(signature, bit))).toBe(false)
      }
      expect(verifier(pairs[(i + 1) % pairs.length]!.pub, message, signature)).toBe(false)
    })
  })

  it("signs an empty message and a presence-sized one", () => {
    const { priv, pub } = x25519Pair()
    const verifier = makeVerifier()
    const signer = presenceSigner(priv)
    for (const message of [new Uint8Array(0), randomBytes(1024)]) {
      expect(verifier(pub, message, signer.sign(message))).toBe(true)
    }
  })

  it("clamps the private key as X25519 does: the clamped-away bits change nothing", () => {
    const { priv, pub } = x25519Pair()
    const verifier = makeVerifier()
    const message = randomBytes(40)
    for (const bit of [0, 1, 2, 254, 255]) {
      const variant = withBit(priv, bit)
      expect(b64(x25519PublicOf(variant))).toBe(b64(pub))
      expect(verifier(pub, message, presenceSigner(variant).sign(message))).toBe(true)
    }
  })

  it("refuses a private key that is not 32 bytes", () => {
    expect(() => presenceSigner(new Uint8Array(31))).toThrow(RangeError)
    expect(() => presenceSigner(new Uint8Array(33))).toThrow(RangeError)
  })

  it("makes a different signature each time (random Z), and both verify", () => {
    const { priv, pub } = x25519Pair()
    const signer = presenceSigner(priv)
    const verifier = makeVerifier()
    const message = new TextEncoder().encode('{"username":"alice","proto":"p2pchat/1"}')
    const first = signer.sign(message)
    const second = signer.sign(message)
    expect(b64(first)).not.toBe(b64(second))
    expect(b64(first.subarray(0, 32))).not.toBe(b64(second.subarray(0, 32)))
    expect(verifier(pub, message, first)).toBe(true)
    expect(verifier(pub, message, second)).toBe(true)
  })
})

describe("makeVerifier: refusals are false, never a throw", () => {
  const { priv, pub } = x25519Pair()
  const message = randomBytes(64)
  const signature = presenceSigner(priv).sign(message)

  it("signatures of the wrong length", () => {
    const verifier = makeVerifier()
    expect(verifier(pub, message, signature)).toBe(true)
    for (const n of [0, 32, 63, 65, 128]) {
      const other = new Uint8Array(n)
      other.set(signature.subarray(0, Math.min(n, 64)))
      expect(verifier(pub, message, other)).toBe(false)
    }
  })

  it("s >= L: refused by node's verify too, and by the verifier before it asks", () => {
    const verifier = makeVerifier()
    const s = fromLE(signature.subarray(32))
    expect(s < L).toBe(true)
    for (const bad of [s + L, L, (1n << 256n) - 1n]) {
      expect(verify(null, message, edKeyObject(edPublicOfX25519(pub)!), withS(signature, bad))).toBe(false)
      expect(verifier(pub, message, withS(signature, bad))).toBe(false)
    }
  })

  it("keys that are refused: p - 1, u >= p, a set top bit (X25519 would take it), wrong lengths", () => {
    const verifier = makeVerifier()
    // X25519 ignores the top bit, so this is the same DH key; the verifier still refuses it.
    expect(b64(x25519Agree(priv, withBit(pub, 255)))).toBe(b64(x25519Agree(priv, pub)))
    for (const u of [toLE32(P - 1n), toLE32(P), toLE32((1n << 255n) - 1n), withBit(pub, 255), new Uint8Array(31)]) {
      expect(verifier(u, message, signature)).toBe(false)
    }
    expect(verifier(new Uint8Array(33).fill(1), message, signature)).toBe(false)
  })

  it("a u on the twist: converted, but no Edwards point, so node's verify fails", () => {
    const verifier = makeVerifier()
    for (let i = 0; i < 5; i++) {
      const u = twistU()
      expect(edPublicOfX25519(u)).toBeInstanceOf(Uint8Array)
      expect(verifier(u, message, signature)).toBe(false)
    }
  })

  it("arguments that are not bytes", () => {
    const verifier = makeVerifier()
    const bogus = [undefined, null, "x".repeat(64), 42, {}] as unknown as ReadonlyArray<Uint8Array>
    for (const b of bogus) {
      expect(verifier(b, message, signature)).toBe(false)
      expect(verifier(pub, b, signature)).toBe(false)
      expect(verifier(pub, message, b)).toBe(false)
    }
  })
})

describe("makeVerifier's key cache", () => {
  it("with room for 2 keys, still verifies right for 5 keys taken in turn", () => {
    const verifier = makeVerifier(2)
    const signers = Array.from({ length: 5 }, () => {
      const { priv, pub } = x25519Pair()
      return { pub, signer: presenceSigner(priv) }
    })
    for (let round = 0; round < 4; round++) {
      signers.forEach(({ pub, signer }, i) => {
        const message = randomBytes(32)
        const signature = signer.sign(message)
        expect(verifier(pub, message, signature)).toBe(true)
        expect(verifier(signers[(i + 1) % 5]!.pub, message, signature)).toBe(false)
        expect(verifier(pub, randomBytes(32), signature)).toBe(false)
      })
    }
  })

  it("remembers a refused key without changing the answer", () => {
    const verifier = makeVerifier(2)
    const u = twistU()
    const { priv, pub } = x25519Pair()
    const message = randomBytes(10)
    const signature = presenceSigner(priv).sign(message)
    for (let i = 0; i < 3; i++) {
      expect(verifier(u, message, signature)).toBe(false)
      expect(verifier(pub, message, signature)).toBe(true)
    }
  })
})
