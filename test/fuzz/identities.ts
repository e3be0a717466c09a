/**
 * The presence world of a fuzz run: identities that sign presence datagrams, and the names
 * they announce, all derived from the run's seed (so that a case replays alone with the
 * same keys). Datagrams of different cases meet in the node's registry through them: one
 * case registers a signed peer, a later one tries to move, replace or remove it.
 *
 * Signing here does not use src/. An honest identity is an Ed25519 key (node:crypto,
 * deterministic signatures) whose public point has an even x, published as the X25519 u of
 * that point (u = (1 + y) / (1 - y)): XEdDSA verification is plain Ed25519 verification
 * against exactly that point, so its signatures must verify. A few honest identities are
 * X25519 keys signing through src's `presenceSigner` instead (the real signer, randomized),
 * so that what nodes really send is in the mix too. The forgers make signatures that a
 * careless verifier would take: by the odd-x twin of a published point, by a point of small
 * order (any signature with h a multiple of its order checks under plain Ed25519), or under
 * a non-canonical spelling of an honest key (u with its top bit set).
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign } from "node:crypto"
import { presenceSigner } from "../../src/domain/Xeddsa.ts"
import { Rng } from "./rng.ts"

const P = (1n << 255n) - 19n
const L = (1n << 252n) + 27742317777372353535851937790883648493n

const fromLE = (bytes: Uint8Array): bigint => BigInt("0x" + (Buffer.from(bytes).reverse().toString("hex") || "0"))
const toLE32 = (n: bigint): Uint8Array => new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse())
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

const powMod = (b: bigint, e: bigint): bigint => {
  let r = 1n
  let x = ((b % P) + P) % P
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % P
    x = (x * x) % P
  }
  return r
}
const inv = (x: bigint): bigint => powMod(x, P - 2n)

/** The Montgomery u of an Edwards point given by its encoding (y, sign bit ignored). */
const uOfEdwards = (edPublic: Uint8Array): bigint => {
  const y = fromLE(edPublic) & ((1n << 255n) - 1n)
  return (((1n + y) * inv(1n - y + P)) % P + P) % P
}

const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex")
const PKCS8_X25519 = Buffer.from("302e020100300506032b656e04220420", "hex")

const edPrivate = (seed: Uint8Array): KeyObject =>
  createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: "der", type: "pkcs8" })
const publicOf = (key: KeyObject): Uint8Array => new Uint8Array(Buffer.from(createPublicKey(key).export({ format: "jwk" }).x!, "base64url"))

export type IdentityKind = "ed25519" | "xeddsa" | "odd-x" | "low-order" | "top-bit"

export interface Identity {
  readonly label: string
  readonly kind: IdentityKind
  /** The id it announces: base64url of 32 bytes, canonical as a string. */
  readonly id: string
  /** Whether its signatures must verify under `id` (false: a forger). */
  readonly honest: boolean
  /** Names it announces as its own (forgers take honest identities' names). */
  readonly names: ReadonlyArray<string>
  /** Index of the source address it usually sends from. */
  readonly home: number
  readonly sign: (message: Uint8Array) => Uint8Array
}

/** A peer that announces without signing: an older p2pchat (with an id) or a classic one (without). */
export interface PlainPeer {
  readonly label: string
  readonly name: string
  readonly id: string | undefined
  readonly home: number
}

export interface World {
  readonly identities: ReadonlyArray<Identity>
  readonly plain: ReadonlyArray<PlainPeer>
  readonly honest: ReadonlyArray<Identity>
  readonly forgers: ReadonlyArray<Identity>
  /** An honest identity that may burn its stamps (ts up to 2^53 - 1): kept apart so the others stay usable. */
  readonly burner: Identity
  /** The source addresses datagrams come from (index 0 is the one the liveness checks use). */
  readonly sources: number
  /** Stamps of case `i` are about `stampBase + 8 i`. */
  readonly stampBase: number
}

/** Names that clash on purpose: case and NFC variants of each other, and one at 32 code points. */
const BASE_NAMES = [
  "alice", "Bob", "carol", "Zo\u00eb", "dave", "\u00c9ve", "frank", "grace", "heidi", "ivan", "judy", "mallory", "\u8a9e\u8a9e",
  "x".repeat(32)
]

/** A variant of a name that has the same registry key: other case, or decomposed (NFD). */
export const nameVariant = (rng: Rng, name: string): string =>
  rng.pick([name.toUpperCase(), name.toLowerCase(), name.normalize("NFD"), name[0]!.toUpperCase() + name.slice(1)])
    .normalize(rng.chance(0.5) ? "NFD" : "NFC")

/** Ed25519 key pairs from the rng until one has the wanted parity of x. */
const edKey = (rng: Rng, oddX: boolean): { readonly key: KeyObject; readonly pub: Uint8Array } => {
  for (;;) {
    const key = edPrivate(rng.bytes(32))
    const pub = publicOf(key)
    if (((pub[31]! & 0x80) !== 0) === oddX) return { key, pub }
  }
}

/**
 * A signature that checks under plain Ed25519 against a point A of small order `order`:
 * R = aB and s = a for a throwaway scalar a, retried until h = H(R || A || M) is a multiple
 * of the order, so that sB = R = R + hA.
 */
const smallOrderForgery = (A: Uint8Array, order: bigint, message: Uint8Array): Uint8Array => {
  for (let j = 0; ; j++) {
    const seed = createHash("sha256").update(message).update(`forge ${j}`).digest()
    const R = publicOf(edPrivate(seed))
    const a = createHash("sha512").update(seed).digest().subarray(0, 32)
    a[0]! &= 248
    a[31]! &= 127
    a[31]! |= 64
    const h = fromLE(createHash("sha512").update(R).update(A).update(message).digest()) % L
    if (h % order === 0n) {
      const out = new Uint8Array(64)
      out.set(R, 0)
      out.set(toLE32(fromLE(a) % L), 32)
      return out
    }
  }
}

/** The Edwards encoding (sign bit 0) a verifier derives from u: y = (u - 1) / (u + 1). */
const edwardsOfU = (u: bigint): Uint8Array => toLE32((((u - 1n) * inv(u + 1n)) % P + P) % P)

export const makeWorld = (seed: number): World => {
  const rng = new Rng(seed, 0x7e55)
  const names = [...BASE_NAMES]
  const take = (n: number) => names.splice(0, n)
  const identities: Array<Identity> = []
  const sources = 4
  const honestEd = (label: string, n: number): Identity => {
    const { key, pub } = edKey(rng, false)
    return {
      label, kind: "ed25519", id: b64(toLE32(uOfEdwards(pub))), honest: true, names: take(n), home: identities.length % sources,
      sign: (m) => new Uint8Array(sign(null, m, key))
    }
  }
  const honestX = (label: string, n: number): Identity => {
    const d = rng.bytes(32)
    const pub = new Uint8Array(Buffer.from(
      createPublicKey(createPrivateKey({ key: Buffer.concat([PKCS8_X25519, d]), format: "der", type: "pkcs8" })).export({ format: "jwk" }).x!,
      "base64url"
    ))
    const signer = presenceSigner(d)
    return { label, kind: "xeddsa", id: b64(pub), honest: true, names: take(n), home: identities.length % sources, sign: (m) => signer.sign(m) }
  }
  for (let i = 0; i < 5; i++) identities.push(honestEd(`ed${i}`, i < 3 ? 2 : 1))
  for (let i = 0; i < 2; i++) identities.push(honestX(`x${i}`, 1))
  const burner = honestEd("burner", 1)
  identities.push(burner)
  const honest = [...identities]
  const stolen = () => rng.pick(honest.flatMap((h) => h.names))

  const forgers: Array<Identity> = []
  {
    // The odd-x twin: the same u as an even point, but it signs as -A.
    const { key, pub } = edKey(rng, true)
    forgers.push({
      label: "odd-x", kind: "odd-x", id: b64(toLE32(uOfEdwards(pub))), honest: false, names: [stolen(), "oddity"], home: 1,
      sign: (m) => new Uint8Array(sign(null, m, key))
    })
  }
  // Points of small order: u = 0 (order 2), u = 1 (order 4), and one of order 8.
  for (const [u, order] of [[0n, 2n], [1n, 4n], [325606250916557431795983626356110631294008115727848805560023387167927233504n, 8n]] as const) {
    const A = edwardsOfU(u)
    forgers.push({
      label: `order-${order}`, kind: "low-order", id: b64(toLE32(u)), honest: false, names: [stolen(), `small-${order}`], home: 2,
      sign: (m) => smallOrderForgery(A, order, m)
    })
  }
  {
    // An honest key under another spelling: its u with the top bit set (u + 2^255 >= p).
    const victim = honest[0]!
    const bytes = new Uint8Array(Buffer.from(victim.id, "base64url"))
    bytes[31]! |= 0x80
    forgers.push({
      label: "top-bit", kind: "top-bit", id: b64(bytes), honest: false, names: [victim.names[0]!, "topbit"], home: 3, sign: victim.sign
    })
  }
  identities.push(...forgers)
  const plain: Array<PlainPeer> = [
    { label: "plain0", name: "olive", id: b64(toLE32(uOfEdwards(edKey(rng, false).pub))), home: 0 },
    { label: "plain1", name: "Peggy", id: b64(toLE32(uOfEdwards(edKey(rng, false).pub))), home: 1 },
    { label: "classic0", name: "rupert", id: undefined, home: 2 },
    { label: "classic1", name: "sybil", id: undefined, home: 3 }
  ]
  return { identities, plain, honest, forgers, burner, sources, stampBase: 1_700_000_000_000 + (seed % 1_000_000) }
}

/** The last base64url character of a 64-byte signature carries 4 spare bits: a spelling with them set. */
export const spareBitsVariant = (sig: string): string => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  const last = alphabet.indexOf(sig.at(-1)!)
  return sig.slice(0, -1) + alphabet[(last & 0b110000) | 0b0101]!
}

/** s + L in place of s: the same equation, a non-canonical scalar (RFC 8032 refuses it). */
export const malleated = (sig: Uint8Array): Uint8Array => {
  const out = new Uint8Array(sig)
  out.set(toLE32(fromLE(sig.subarray(32, 64)) + L), 32)
  return out
}
