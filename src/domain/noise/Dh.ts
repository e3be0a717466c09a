/**
 * Noise DH functions for 25519: X25519 on node:crypto KeyObjects, raw 32-byte keys in and out.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type JsonWebKey, type KeyObject, timingSafeEqual } from "node:crypto"
import { DH_LEN, type KeyPair, NoiseError, requireBytes } from "./Common.ts"

// Raw keys go in and out of node:crypto as JWK (base64url `x`) rather than DER: with OpenSSL 3
// here, importing a public key costs ~16 us as JWK and ~95 us as DER, exporting one ~4 us as
// JWK and ~120 us as DER. Private keys are imported from DER (JWK would need `x` given), but
// only once per key pair: the static key's KeyObject is cached (see `localKey`).

// DER prefix for a raw X25519 private key (PKCS#8, OID 1.3.101.110).
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex")

const privateKeyObject = (raw: Uint8Array): KeyObject => {
  if (raw.byteLength !== DH_LEN) throw new NoiseError("InvalidLength", "X25519 private key must be 32 bytes")
  try {
    return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: "der", type: "pkcs8" })
  } catch (cause) {
    throw new NoiseError("InvalidArgument", "invalid X25519 private key", { cause })
  }
}

const publicKeyObject = (raw: Uint8Array): KeyObject => {
  if (raw.byteLength !== DH_LEN) throw new NoiseError("InvalidLength", "X25519 public key must be 32 bytes")
  try {
    const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("base64url")
    return createPublicKey({ key: { kty: "OKP", crv: "X25519", x }, format: "jwk" })
  } catch (cause) {
    throw new NoiseError("InvalidArgument", "invalid X25519 public key", { cause })
  }
}

const fromBase64url = (text: string | undefined): Uint8Array => new Uint8Array(Buffer.from(text ?? "", "base64url"))

/**
 * The raw public key of an X25519 KeyObject that was imported, never one from the generator
 * (see `generateX25519`). A private JWK carries `x` too.
 */
const rawPublicOf = (key: KeyObject): Uint8Array => fromBase64url(key.export({ format: "jwk" }).x)

type JwkEncoding = { readonly format: "jwk" }
/**
 * generateKeyPairSync("x25519") with JWK output made by the generator itself (@types/node
 * lacks these overloads; Node documents the encodings as those of keyObject.export()).
 * A generated KeyObject must never be exported as JWK afterwards: on Node 20 that can
 * deadlock the process (ExportJWKEdKey holds the key's mutex while it allocates; the GC it
 * triggers runs the finished KeyGenJob's destructor, which takes the same mutex): 4 of 6
 * runs of 100,000 generate-then-export hung here, none of 12 with the encoding done inside.
 */
const generateX25519 = generateKeyPairSync as unknown as {
  (type: "x25519", options: { publicKeyEncoding: JwkEncoding; privateKeyEncoding: JwkEncoding }): {
    publicKey: JsonWebKey
    privateKey: JsonWebKey
  }
  (type: "x25519", options: { publicKeyEncoding: JwkEncoding }): { publicKey: JsonWebKey; privateKey: KeyObject }
}

/** A fresh random X25519 key pair (raw 32-byte keys). */
export const generateKeyPair = (): KeyPair => {
  const { privateKey } = generateX25519("x25519", { publicKeyEncoding: { format: "jwk" }, privateKeyEncoding: { format: "jwk" } })
  return { privateKey: fromBase64url(privateKey.d), publicKey: fromBase64url(privateKey.x) }
}

/** The raw X25519 public key of a raw 32-byte private key. */
export const publicKeyOf = (privateKey: Uint8Array): Uint8Array =>
  rawPublicOf(privateKeyObject(requireBytes(privateKey, "privateKey")))

/** A key pair with its private KeyObject, for repeated DH. */
export interface LocalKey {
  readonly publicKey: Uint8Array
  readonly object: KeyObject
}

/**
 * LocalKeys by the privateKey array of the KeyPair they were made from. A node's static key
 * is used by every handshake, and importing it (plus deriving its public key to check the
 * pair) cost ~0.6 ms per handshake, about half of the responder's Noise CPU. An entry is used
 * only while the array still holds the bytes it was made from and the pair's publicKey matches.
 */
const localKeys = new WeakMap<Uint8Array, LocalKey & { readonly privateCopy: Uint8Array }>()

export const localKey = (kp: KeyPair, what: string): LocalKey => {
  const priv = requireBytes(kp?.privateKey, `${what}.privateKey`)
  const pub = requireBytes(kp?.publicKey, `${what}.publicKey`)
  let cached = localKeys.get(priv)
  if (cached === undefined || !timingSafeEqual(cached.privateCopy, priv)) {
    const object = privateKeyObject(priv)
    cached = { publicKey: rawPublicOf(object), object, privateCopy: new Uint8Array(priv) }
    localKeys.set(priv, cached)
  }
  if (pub.byteLength !== DH_LEN || !timingSafeEqual(cached.publicKey, pub)) {
    throw new NoiseError("InvalidArgument", `${what}.publicKey does not match its privateKey`)
  }
  return cached
}

/** A fresh ephemeral straight from the generator (no export/re-import round trip). */
export const freshLocalKey = (): LocalKey => {
  const { privateKey, publicKey } = generateX25519("x25519", { publicKeyEncoding: { format: "jwk" } })
  return { object: privateKey, publicKey: fromBase64url(publicKey.x) }
}

export const dh = (local: LocalKey, remotePublic: Uint8Array): Buffer => {
  try {
    return diffieHellman({ privateKey: local.object, publicKey: publicKeyObject(remotePublic) })
  } catch (cause) {
    if (cause instanceof NoiseError) throw cause
    // OpenSSL refuses an all-zero shared secret (low-order peer point).
    throw new NoiseError("DhFailed", "X25519 key agreement failed", { cause })
  }
}
