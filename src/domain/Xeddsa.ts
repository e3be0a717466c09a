/**
 * XEdDSA (Perrin, "The XEdDSA and VXEdDSA Signature Schemes", 2016): Ed25519-compatible
 * signatures made with a node's X25519 identity key, so that presence announcements can be
 * signed without a second key. Signing does its own Edwards arithmetic on BigInt (node:crypto
 * signs only from an Ed25519 seed, never from a bare scalar); verifying is a plain Ed25519
 * verification by node:crypto against the Edwards form of the Montgomery public key.
 *
 * BigInt arithmetic is not constant-time. Signing takes the same path for every scalar (an
 * addition per 4-bit window, zero windows included; inversion by a fixed exponent) to keep the
 * obvious leaks out, but an attacker who could time many signatures precisely might learn
 * nonce bits. Peers do make us sign (the Announcer answers a newcomer at once), at most once
 * per address per interval, and only through the jitter of a LAN round trip.
 */
import { createHash, createPublicKey, type KeyObject, randomBytes, verify } from "node:crypto"

/** The field prime 2^255 - 19. */
const P = (1n << 255n) - 19n
/** The order of the base point. */
const L = (1n << 252n) + 27742317777372353535851937790883648493n

const mod = (x: bigint, m: bigint = P): bigint => {
  const r = x % m
  return r < 0n ? r + m : r
}

const powMod = (base: bigint, exponent: bigint): bigint => {
  let result = 1n
  let b = mod(base)
  for (let e = exponent; e > 0n; e >>= 1n) {
    if ((e & 1n) === 1n) result = (result * b) % P
    b = (b * b) % P
  }
  return result
}

/**
 * 1/x mod p by Fermat (x^(p-2)), for secret values: the same squarings and multiplications
 * whatever x is. 0 has no inverse and maps to 0; callers rule it out.
 */
const invert = (x: bigint): bigint => powMod(x, P - 2n)

/**
 * 1/x mod p by Euclid, for public values only (its step count depends on x): ~20 us here
 * against ~150 us for `invert`, and it is most of the cost of a key conversion.
 */
const invertPublic = (x: bigint): bigint => {
  // Invariants: a = u * x and b = v * x (mod p); it ends with b = gcd = 1.
  let a = mod(x)
  let b = P
  let u = 1n
  let v = 0n
  while (a !== 0n) {
    const q = b / a
    const nextA = b - q * a
    const nextU = v - q * u
    b = a
    v = u
    a = nextA
    u = nextU
  }
  return mod(v)
}

/** The curve constant d = -121665/121666 and 2d, used by the addition formula. */
const D = mod(-121665n * invertPublic(121666n))
const D2 = mod(2n * D)

/** Little-endian bytes to an integer (RFC 7748 and 8032 both encode this way). */
const fromLE = (bytes: Uint8Array): bigint => {
  let n = 0n
  for (let i = bytes.byteLength - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!)
  return n
}

/** An integer below 2^256 as 32 little-endian bytes. */
const toLE32 = (n: bigint): Uint8Array => {
  const out = new Uint8Array(32)
  let v = n
  for (let i = 0; i < 32; i++) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return out
}

const sha512ModL = (...parts: ReadonlyArray<Uint8Array>): bigint => {
  const hash = createHash("sha512")
  for (const part of parts) hash.update(part)
  return mod(fromLE(hash.digest()), L)
}

// ---------------------------------------------------------------------------------------------
// Edwards points, extended coordinates (x = X/Z, y = Y/Z, xy = T/Z) on -x^2 + y^2 = 1 + d x^2 y^2

interface Point {
  readonly X: bigint
  readonly Y: bigint
  readonly Z: bigint
  readonly T: bigint
}

const IDENTITY: Point = { X: 0n, Y: 1n, Z: 1n, T: 0n }

/** The base point B: y = 4/5, x the even root (RFC 8032 section 5.1). */
const BASE: Point = {
  X: 15112221349535400772501151409588531511454012693041857206046113283949847762202n,
  Y: 46316835694926478169428394003475163141307993866256225615783033603165251855960n,
  Z: 1n,
  T: mod(
    15112221349535400772501151409588531511454012693041857206046113283949847762202n *
      46316835694926478169428394003475163141307993866256225615783033603165251855960n
  )
}

/**
 * Hisil-Wong-Carter-Dawson addition (add-2008-hwcd-3). It is complete on this curve (a = -1
 * is a square, d is not), so doubling and the identity need no special case, and every
 * window of a scalar multiplication can take the same path.
 */
const add = (p: Point, q: Point): Point => {
  const a = ((p.Y - p.X) * (q.Y - q.X)) % P
  const b = ((p.Y + p.X) * (q.Y + q.X)) % P
  const c = (((p.T * D2) % P) * q.T) % P
  const d = (2n * p.Z * q.Z) % P
  const e = b - a
  const f = d - c
  const g = d + c
  const h = b + a
  return { X: mod(e * f), Y: mod(g * h), Z: mod(f * g), T: mod(e * h) }
}

/**
 * TABLE[j][i] = i * 16^j * B for 64 windows of 4 bits: a fixed-base multiplication is then 64
 * additions and no doublings. 1024 points (~5 ms), made for the first signer, not at import.
 */
let TABLE: ReadonlyArray<ReadonlyArray<Point>> | undefined

const baseTable = (): ReadonlyArray<ReadonlyArray<Point>> => {
  if (TABLE !== undefined) return TABLE
  const table: Array<Array<Point>> = []
  let windowBase = BASE
  for (let j = 0; j < 64; j++) {
    const row: Array<Point> = [IDENTITY]
    for (let i = 1; i < 16; i++) row.push(add(row[i - 1]!, windowBase))
    table.push(row)
    windowBase = add(row[15]!, windowBase)
  }
  TABLE = table
  return table
}

/** k * B for 0 <= k < 2^256: one table addition per 4-bit window, zero windows included. */
const mulBase = (k: bigint): Point => {
  const table = baseTable()
  let acc = IDENTITY
  for (let j = 0; j < 64; j++) acc = add(acc, table[j]![Number((k >> BigInt(4 * j)) & 15n)]!)
  return acc
}

/** RFC 8032 encoding: y little-endian, the low bit of x in the top bit. */
const encode = (p: Point): { readonly bytes: Uint8Array; readonly xOdd: boolean } => {
  const zInv = invert(p.Z)
  const x = mod(p.X * zInv)
  const bytes = toLE32(mod(p.Y * zInv))
  const xOdd = (x & 1n) === 1n
  if (xOdd) bytes[31] |= 0x80
  return { bytes, xOdd }
}

// ---------------------------------------------------------------------------------------------
// Signing

export interface PresenceSigner {
  /** The Ed25519 public key a verifier derives from our X25519 public key (sign bit 0). */
  readonly edPublicKey: Uint8Array
  /** An XEdDSA signature, R || s (64 bytes); randomized, so two signatures of one message differ. */
  sign(message: Uint8Array): Uint8Array
}

/** hash_1's prefix: 2^256 - 2 little-endian, so the nonce hash never collides with hash(R || A || M). */
const HASH1_PREFIX = new Uint8Array(32).fill(0xff)
HASH1_PREFIX[0] = 0xfe

/**
 * A signer for a raw 32-byte X25519 private key (node's JWK `d`, unclamped). XEdDSA's
 * calculate_key_pair: the scalar is clamped as X25519 does, and negated when a * B has an odd
 * x, so that the public key is a * B with sign bit 0, which is all a Montgomery u can tell.
 * The key pair is worked out once; each signature then costs a fixed-base multiplication and
 * an inversion.
 */
export const presenceSigner = (x25519PrivateKey: Uint8Array): PresenceSigner => {
  if (!(x25519PrivateKey instanceof Uint8Array) || x25519PrivateKey.byteLength !== 32) {
    throw new RangeError("X25519 private key must be 32 bytes")
  }
  const k = new Uint8Array(x25519PrivateKey)
  k[0] &= 248
  k[31] &= 127
  k[31] |= 64
  const clamped = mod(fromLE(k), L)
  const { bytes: encoded, xOdd } = encode(mulBase(clamped))
  const a = xOdd ? mod(-clamped, L) : clamped
  encoded[31] &= 0x7f
  const edPublicKey: Uint8Array = encoded
  const aBytes = toLE32(a)
  const sign = (message: Uint8Array): Uint8Array => {
    const r = sha512ModL(HASH1_PREFIX, aBytes, message, randomBytes(64))
    const R = encode(mulBase(r)).bytes
    const h = sha512ModL(R, edPublicKey, message)
    const signature = new Uint8Array(64)
    signature.set(R, 0)
    signature.set(toLE32(mod(r + h * a, L)), 32)
    return signature
  }
  return { edPublicKey: new Uint8Array(edPublicKey), sign }
}

// ---------------------------------------------------------------------------------------------
// Verifying

/**
 * The u-coordinates below p of the points of small order: 0 (order 2), 1 (4), the two of
 * order 8, and p - 1 (order 4 on the twist). A key that is one of these proves no secret:
 * anyone can make a signature that checks against it with odds of 1 in 8 or better, and
 * X25519 with it gives the all-zero secret node:crypto refuses anyway.
 */
const LOW_ORDER_U: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n
])

/**
 * The Ed25519 public key (y = (u - 1) / (u + 1), sign bit 0) of an X25519 public key, or
 * undefined for a key that is not a canonical 32-byte u of a point of large order.
 *
 * Non-canonical u: XEdDSA's verify refuses u >= p with u read as all 256 bits, before its
 * convert_mont masks the top bit; so do we, which refuses a set top bit too. X25519 itself
 * would mask that bit and reduce mod p, but a key is an identity here and must have one
 * encoding: otherwise a copy of a peer's signed announcement with u + p, or with the top bit
 * flipped, would verify under what looks like another identity. node:crypto never exports a
 * non-canonical X25519 key. Also refused: the low-order u above (p - 1 among them, where
 * u + 1 has no inverse). A u on the twist is not refused here: its y decodes to no Edwards
 * point, and node:crypto's verification then fails.
 */
export const edPublicOfX25519 = (u: Uint8Array): Uint8Array | undefined => {
  if (!(u instanceof Uint8Array) || u.byteLength !== 32) return undefined
  const n = fromLE(u)
  if (n >= P || LOW_ORDER_U.has(n)) return undefined
  return toLE32(mod((n - 1n) * invertPublic(n + 1n)))
}

/**
 * Ed25519 public KeyObjects are imported as JWK: with node 20 / OpenSSL 3.0 here that costs
 * ~6 us a key, SPKI DER ~80-120 us (as for X25519, see noise/Dh.ts).
 */
const importEd25519 = (edPublic: Uint8Array): KeyObject =>
  createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(edPublic).toString("base64url") },
    format: "jwk"
  })

/** A key's KeyObject, or null for a key that is refused (remembered too: refusing costs the inversion). */
const keyObjectOf = (u: Uint8Array): KeyObject | null => {
  const edPublic = edPublicOfX25519(u)
  if (edPublic === undefined) return null
  try {
    return importEd25519(edPublic)
  } catch {
    return null
  }
}

/**
 * Whether s (the second half of R || s) is below the group order L = 2^252 + ...: at once from
 * its top byte (below 0x10: s < 2^252; above: s > L), as an integer only at the edge.
 */
const canonicalS = (signature: Uint8Array): boolean => {
  const top = signature[63]!
  return top < 0x10 || (top === 0x10 && fromLE(signature.subarray(32, 64)) < L)
}

/** An X25519 public key: its 32 bytes, or its base64url (the `id` presence carries, decoded only on a cache miss). */
export type PublicKeyInput = Uint8Array | string

/**
 * A verifier of XEdDSA signatures by X25519 public key. Converting and importing a key adds
 * ~35-50 us to node's ~110 us Ed25519 verification here, so each key's KeyObject (or its
 * refusal) is kept, by base64url of u, in a cache of at most `cacheSize` keys that evicts the
 * least recently used. Never throws: a signature that is not 64 bytes, has s >= L (RFC 8032
 * refuses it, and so does node:crypto here; we check it ourselves rather than rely on the
 * library) or fails, a refused key, or an argument that is not bytes, all give false.
 */
export const makeVerifier = (
  cacheSize = 4096
): ((x25519Public: PublicKeyInput, message: Uint8Array, signature: Uint8Array) => boolean) => {
  const capacity = Math.max(1, Math.floor(cacheSize) || 1)
  const cache = new Map<string, KeyObject | null>()
  const keyFor = (pub: PublicKeyInput): KeyObject | null => {
    const id = typeof pub === "string" ? pub : Buffer.from(pub.buffer, pub.byteOffset, pub.byteLength).toString("base64url")
    let key = cache.get(id)
    if (key !== undefined) {
      cache.delete(id)
    } else {
      const u = typeof pub === "string" ? new Uint8Array(Buffer.from(pub, "base64url")) : pub
      key = u.byteLength === 32 ? keyObjectOf(u) : null
      if (cache.size >= capacity) cache.delete(cache.keys().next().value!)
    }
    cache.set(id, key)
    return key
  }
  return (x25519Public, message, signature) => {
    try {
      if (!(signature instanceof Uint8Array) || signature.byteLength !== 64) return false
      if (!(message instanceof Uint8Array)) return false
      if (typeof x25519Public !== "string" && !(x25519Public instanceof Uint8Array && x25519Public.byteLength === 32)) return false
      if (!canonicalS(signature)) return false
      const key = keyFor(x25519Public)
      return key !== null && verify(null, message, key, signature)
    } catch {
      return false
    }
  }
}
