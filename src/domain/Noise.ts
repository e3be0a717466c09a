/**
 * A small Noise Protocol Framework (revision 34) implementation, XX pattern only:
 *
 *   Noise_XX_25519_ChaChaPoly_SHA256   (what p2pchat/1 uses)
 *   Noise_XX_25519_AESGCM_SHA256       (supported so the published AESGCM vectors can be checked)
 *
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 *
 * Built only on node:crypto primitives: X25519 (crypto.diffieHellman on KeyObjects built from
 * raw 32-byte keys), ChaCha20-Poly1305 / AES-256-GCM (createCipheriv), SHA-256 and
 * HMAC-SHA256 (for the Noise HKDF). No PSK modes, no other patterns.
 *
 * Structure follows the spec: CipherState (k, n), SymmetricState (ck, h) and a HandshakeState
 * specialised to XX.
 *
 * Error behaviour (every failure is a NoiseError, never another kind of exception):
 * - Handshake: ANY failure of writeMessage/readMessage (out-of-turn call, bad length, failed
 *   decryption, bad DH) is terminal: the handshake moves to a failed state and every later call
 *   throws NoiseError("InvalidState"). Noise requires the handshake to be abandoned on error.
 * - Transport: a failed decrypt throws NoiseError("DecryptFailed") and does NOT advance the
 *   receive nonce (spec section 5.1), so no partial state remains: only the frame carrying the
 *   expected nonce can ever be accepted next. Replayed, reordered, altered or truncated frames
 *   therefore always fail. p2pchat ends the session on the first failure.
 * - Messages (handshake or transport) longer than 65535 bytes are refused with "InvalidLength".
 * - Nonce 2^64-1 is reserved: reaching it raises "NonceExhausted".
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  type JsonWebKey,
  timingSafeEqual,
  type KeyObject
} from "node:crypto"

// ---------------------------------------------------------------------------------------------
// Public types and constants

export interface KeyPair {
  readonly publicKey: Uint8Array
  readonly privateKey: Uint8Array
}

export const PROTOCOL_NAME = "Noise_XX_25519_ChaChaPoly_SHA256"
export const SUPPORTED_PROTOCOLS: ReadonlyArray<string> = [
  "Noise_XX_25519_ChaChaPoly_SHA256",
  "Noise_XX_25519_AESGCM_SHA256"
]

/** Noise: no message, handshake or transport, may exceed 65535 bytes. */
export const MAX_MESSAGE_LENGTH = 65535
export const DH_LEN = 32
export const HASH_LEN = 32
export const TAG_LEN = 16
/** Largest plaintext that fits a single transport message. */
export const MAX_PLAINTEXT_LENGTH = MAX_MESSAGE_LENGTH - TAG_LEN

export type NoiseErrorCode =
  | "InvalidState" // out-of-turn call, use after failure, split before completion
  | "InvalidLength" // message too short / too long, bad key length
  | "InvalidArgument" // not a Uint8Array, key pair inconsistent
  | "DecryptFailed" // AEAD authentication failure
  | "NonceExhausted" // nonce 2^64-1 reached
  | "DhFailed" // X25519 rejected the peer key (e.g. low-order point -> all-zero output)
  | "UnsupportedProtocol"

export class NoiseError extends Error {
  readonly _tag = "NoiseError" as const
  readonly code: NoiseErrorCode
  constructor(code: NoiseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = "NoiseError"
    this.code = code
  }
}

export interface Transport {
  /** Encrypts one transport message (plaintext at most MAX_PLAINTEXT_LENGTH bytes). */
  encrypt(plaintext: Uint8Array): Uint8Array
  /**
   * Decrypts the next transport message from the peer. Throws NoiseError on any failure and
   * leaves the receive nonce unchanged; the caller is expected to end the session.
   */
  decrypt(ciphertext: Uint8Array): Uint8Array
}

export interface Handshake {
  readonly initiator: boolean
  /** True once all three XX messages have been written/read; split() is then allowed. */
  readonly complete: boolean
  /** True once a call failed; the handshake is then unusable. */
  readonly failed: boolean
  /** True when the next call must be writeMessage (false: readMessage), while in progress. */
  readonly isMyTurn: boolean
  writeMessage(payload?: Uint8Array): Uint8Array
  /** Returns the payload. */
  readMessage(message: Uint8Array): Uint8Array
  /** The peer's static public key (a copy) once received: initiator after msg 2, responder after msg 3. */
  remoteStatic(): Uint8Array | undefined
  /** The final handshake hash h (a copy); throws unless complete. Usable for channel binding. */
  handshakeHash(): Uint8Array
  /** The transport; throws unless complete. Calling it again returns the same Transport. */
  split(): Transport
}

export interface HandshakeOptions {
  readonly initiator: boolean
  readonly prologue: Uint8Array
  readonly staticKey: KeyPair
  /** Tests only (test vectors). A fresh ephemeral key is generated when absent. */
  readonly ephemeral?: KeyPair
  /** Defaults to PROTOCOL_NAME; must be one of SUPPORTED_PROTOCOLS. */
  readonly protocolName?: string
}

// ---------------------------------------------------------------------------------------------
// Helpers

const EMPTY = new Uint8Array(0)

const requireBytes = (value: unknown, what: string): Uint8Array => {
  if (!(value instanceof Uint8Array)) {
    throw new NoiseError("InvalidArgument", `${what} must be a Uint8Array`)
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// DH: X25519 on node:crypto KeyObjects
//
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
interface LocalKey {
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

const localKey = (kp: KeyPair, what: string): LocalKey => {
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
const freshLocalKey = (): LocalKey => {
  const { privateKey, publicKey } = generateX25519("x25519", { publicKeyEncoding: { format: "jwk" } })
  return { object: privateKey, publicKey: fromBase64url(publicKey.x) }
}

const dh = (local: LocalKey, remotePublic: Uint8Array): Buffer => {
  try {
    return diffieHellman({ privateKey: local.object, publicKey: publicKeyObject(remotePublic) })
  } catch (cause) {
    if (cause instanceof NoiseError) throw cause
    // OpenSSL refuses an all-zero shared secret (low-order peer point).
    throw new NoiseError("DhFailed", "X25519 key agreement failed", { cause })
  }
}

// ---------------------------------------------------------------------------------------------
// Hash: SHA-256 and the Noise HKDF (HMAC-SHA256)

const sha256 = (...parts: ReadonlyArray<Uint8Array>): Buffer => {
  const h = createHash("sha256")
  for (const p of parts) h.update(p)
  return h.digest()
}

const hmac = (key: Uint8Array, ...parts: ReadonlyArray<Uint8Array>): Buffer => {
  const m = createHmac("sha256", key)
  for (const p of parts) m.update(p)
  return m.digest()
}

const BYTE_1 = Uint8Array.of(1)
const BYTE_2 = Uint8Array.of(2)

/** Noise HKDF with num_outputs = 2. */
const hkdf2 = (chainingKey: Uint8Array, ikm: Uint8Array): [Buffer, Buffer] => {
  const tempKey = hmac(chainingKey, ikm)
  const out1 = hmac(tempKey, BYTE_1)
  const out2 = hmac(tempKey, out1, BYTE_2)
  return [out1, out2]
}

// ---------------------------------------------------------------------------------------------
// Cipher: ChaChaPoly or AESGCM with the Noise nonce encodings

type CipherName = "ChaChaPoly" | "AESGCM"

const NONCE_MAX_HALF = 0xffffffff

/**
 * Noise CipherState: a key k (absent until the first MixKey) and a 64-bit nonce n, held as
 * two uint32 halves so counting needs no bigint. Nonce 2^64-1 is reserved.
 */
export class CipherState {
  readonly #cipher: CipherName
  #key: KeyObject | undefined = undefined
  #lo = 0
  #hi = 0
  /** The 12-byte AEAD nonce, rewritten in place for every message. */
  readonly #nonce = Buffer.alloc(12)

  constructor(cipher: CipherName = "ChaChaPoly", key?: Uint8Array) {
    this.#cipher = cipher
    if (key !== undefined) this.initializeKey(key)
  }

  initializeKey(key: Uint8Array | undefined): void {
    if (key !== undefined && key.byteLength !== 32) throw new NoiseError("InvalidLength", "cipher key must be 32 bytes")
    this.#key = key === undefined ? undefined : createSecretKey(key)
    this.#lo = 0
    this.#hi = 0
  }

  hasKey(): boolean {
    return this.#key !== undefined
  }

  /** Spec SetNonce; 0 <= n < 2^64. Mainly for tests of the reserved nonce. */
  setNonce(n: bigint): void {
    if (n < 0n || n > 0xffffffffffffffffn) throw new NoiseError("InvalidArgument", "nonce out of range")
    this.#lo = Number(n & 0xffffffffn)
    this.#hi = Number(n >> 32n)
  }

  /** The next nonce to be used. */
  nonce(): bigint {
    return (BigInt(this.#hi) << 32n) | BigInt(this.#lo)
  }

  #prepareNonce(): Buffer {
    if (this.#lo === NONCE_MAX_HALF && this.#hi === NONCE_MAX_HALF) {
      throw new NoiseError("NonceExhausted", "nonce 2^64-1 is reserved: rekey or start a new session")
    }
    const n = this.#nonce
    if (this.#cipher === "ChaChaPoly") {
      // 32 bits of zeros followed by the little-endian 64-bit counter.
      n.writeUInt32LE(this.#lo, 4)
      n.writeUInt32LE(this.#hi, 8)
    } else {
      // AESGCM: 32 bits of zeros followed by the big-endian 64-bit counter.
      n.writeUInt32BE(this.#hi, 4)
      n.writeUInt32BE(this.#lo, 8)
    }
    return n
  }

  #advance(): void {
    if (this.#lo === NONCE_MAX_HALF) {
      this.#lo = 0
      this.#hi++
    } else {
      this.#lo++
    }
  }

  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const key = this.#key
    if (key === undefined) return plaintext
    const nonce = this.#prepareNonce()
    let body: Buffer
    let tag: Buffer
    try {
      const c =
        this.#cipher === "ChaChaPoly"
          ? createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LEN })
          : createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_LEN })
      if (ad.byteLength > 0) c.setAAD(ad, { plaintextLength: plaintext.byteLength })
      body = c.update(plaintext)
      c.final() // stream ciphers: empty
      tag = c.getAuthTag()
    } catch (cause) {
      throw new NoiseError("InvalidArgument", "encryption failed", { cause })
    }
    const out = Buffer.allocUnsafe(body.byteLength + TAG_LEN)
    out.set(body, 0)
    out.set(tag, body.byteLength)
    this.#advance()
    return out
  }

  /** On authentication failure throws NoiseError("DecryptFailed") and does not advance n. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    const key = this.#key
    if (key === undefined) return ciphertext
    const len = ciphertext.byteLength
    if (len < TAG_LEN) throw new NoiseError("InvalidLength", "ciphertext shorter than the 16-byte tag")
    const nonce = this.#prepareNonce()
    let plaintext: Buffer
    try {
      const d =
        this.#cipher === "ChaChaPoly"
          ? createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LEN })
          : createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_LEN })
      d.setAuthTag(ciphertext.subarray(len - TAG_LEN))
      if (ad.byteLength > 0) d.setAAD(ad, { plaintextLength: len - TAG_LEN })
      plaintext = d.update(ciphertext.subarray(0, len - TAG_LEN))
      d.final() // throws on a bad tag
    } catch (cause) {
      throw new NoiseError("DecryptFailed", "message authentication failed", { cause })
    }
    this.#advance()
    return plaintext
  }
}

// ---------------------------------------------------------------------------------------------
// SymmetricState

export class SymmetricState {
  readonly cipherName: CipherName
  readonly cs: CipherState
  #ck: Buffer
  #h: Buffer

  constructor(protocolName: string, cipherName: CipherName) {
    this.cipherName = cipherName
    const name = Buffer.from(protocolName, "utf8")
    if (name.byteLength <= HASH_LEN) {
      this.#h = Buffer.alloc(HASH_LEN)
      this.#h.set(name)
    } else {
      this.#h = sha256(name)
    }
    this.#ck = Buffer.from(this.#h)
    this.cs = new CipherState(cipherName)
  }

  mixKey(ikm: Uint8Array): void {
    const [ck, tempK] = hkdf2(this.#ck, ikm)
    this.#ck = ck
    this.cs.initializeKey(tempK) // HASHLEN == 32: no truncation needed
  }

  mixHash(data: Uint8Array): void {
    this.#h = sha256(this.#h, data)
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cs.encryptWithAd(this.#h, plaintext)
    this.mixHash(ciphertext)
    return ciphertext
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cs.decryptWithAd(this.#h, ciphertext)
    this.mixHash(ciphertext)
    return plaintext
  }

  handshakeHash(): Uint8Array {
    return new Uint8Array(this.#h)
  }

  split(): [CipherState, CipherState] {
    const [k1, k2] = hkdf2(this.#ck, EMPTY)
    this.#ck.fill(0)
    return [new CipherState(this.cipherName, k1), new CipherState(this.cipherName, k2)]
  }
}

// ---------------------------------------------------------------------------------------------
// HandshakeState for XX

const PROTOCOL_RE = /^Noise_XX_25519_(ChaChaPoly|AESGCM)_SHA256$/

class TransportImpl implements Transport {
  readonly #send: CipherState
  readonly #recv: CipherState
  constructor(send: CipherState, recv: CipherState) {
    this.#send = send
    this.#recv = recv
  }
  encrypt(plaintext: Uint8Array): Uint8Array {
    requireBytes(plaintext, "plaintext")
    if (plaintext.byteLength > MAX_PLAINTEXT_LENGTH) {
      throw new NoiseError("InvalidLength", `plaintext longer than ${MAX_PLAINTEXT_LENGTH} bytes`)
    }
    return this.#send.encryptWithAd(EMPTY, plaintext)
  }
  decrypt(ciphertext: Uint8Array): Uint8Array {
    requireBytes(ciphertext, "ciphertext")
    if (ciphertext.byteLength > MAX_MESSAGE_LENGTH) {
      throw new NoiseError("InvalidLength", `message longer than ${MAX_MESSAGE_LENGTH} bytes`)
    }
    return this.#recv.decryptWithAd(EMPTY, ciphertext)
  }
}

/** Fixed bytes per XX message on top of the payload (payload tag included where a key exists). */
const MESSAGE_OVERHEAD = [DH_LEN, DH_LEN + DH_LEN + TAG_LEN + TAG_LEN, DH_LEN + TAG_LEN + TAG_LEN] as const

class XXHandshake implements Handshake {
  readonly initiator: boolean
  readonly #ss: SymmetricState
  readonly #s: LocalKey
  #e: LocalKey | undefined
  #re: Uint8Array | undefined = undefined
  #rs: Uint8Array | undefined = undefined
  /** Index of the next message, 0..2; 3 when complete. */
  #index = 0
  #failed = false
  #transport: Transport | undefined = undefined
  #hash: Uint8Array | undefined = undefined

  constructor(opts: HandshakeOptions) {
    const name = opts.protocolName ?? PROTOCOL_NAME
    const m = PROTOCOL_RE.exec(name)
    if (m === null) throw new NoiseError("UnsupportedProtocol", `unsupported protocol ${JSON.stringify(name)}`)
    this.initiator = opts.initiator === true
    this.#s = localKey(opts.staticKey, "staticKey")
    this.#e = opts.ephemeral === undefined ? undefined : localKey(opts.ephemeral, "ephemeral")
    this.#ss = new SymmetricState(name, m[1] as CipherName)
    this.#ss.mixHash(requireBytes(opts.prologue, "prologue"))
  }

  get complete(): boolean {
    return this.#index === 3
  }

  get failed(): boolean {
    return this.#failed
  }

  get isMyTurn(): boolean {
    return !this.#failed && this.#index < 3 && (this.#index % 2 === 0) === this.initiator
  }

  remoteStatic(): Uint8Array | undefined {
    return this.#rs === undefined ? undefined : new Uint8Array(this.#rs)
  }

  handshakeHash(): Uint8Array {
    if (this.#hash === undefined) throw new NoiseError("InvalidState", "handshake not complete")
    return new Uint8Array(this.#hash)
  }

  split(): Transport {
    if (this.#transport === undefined) throw new NoiseError("InvalidState", "handshake not complete")
    return this.#transport
  }

  #checkTurn(writing: boolean): void {
    if (this.#failed) throw new NoiseError("InvalidState", "handshake already failed")
    if (this.#index >= 3) throw new NoiseError("InvalidState", "handshake already complete")
    if (this.isMyTurn !== writing) {
      throw new NoiseError(
        "InvalidState",
        `out of turn: message ${this.#index + 1} must be ${writing ? "read" : "written"} by the ${this.initiator ? "initiator" : "responder"}`
      )
    }
  }

  /** Runs one step; any failure poisons the handshake (Noise: abandon on error). */
  #guard<A>(writing: boolean, step: () => A): A {
    try {
      this.#checkTurn(writing)
      const result = step()
      this.#index++
      if (this.#index === 3) this.#finish()
      return result
    } catch (cause) {
      this.#failed = true
      if (cause instanceof NoiseError) throw cause
      throw new NoiseError("InvalidArgument", "handshake step failed", { cause })
    }
  }

  #finish(): void {
    this.#hash = this.#ss.handshakeHash()
    const [c1, c2] = this.#ss.split()
    this.#transport = this.initiator ? new TransportImpl(c1, c2) : new TransportImpl(c2, c1)
    this.#e = undefined
  }

  #dh(local: LocalKey | undefined, remote: Uint8Array | undefined): void {
    if (local === undefined || remote === undefined) throw new NoiseError("InvalidState", "missing key for DH")
    this.#ss.mixKey(dh(local, remote))
  }

  writeMessage(payload: Uint8Array = EMPTY): Uint8Array {
    return this.#guard(true, () => {
      requireBytes(payload, "payload")
      if (MESSAGE_OVERHEAD[this.#index as 0 | 1 | 2] + payload.byteLength > MAX_MESSAGE_LENGTH) {
        throw new NoiseError("InvalidLength", `handshake message would exceed ${MAX_MESSAGE_LENGTH} bytes`)
      }
      const parts: Uint8Array[] = []
      const ss = this.#ss
      switch (this.#index) {
        case 0: // -> e
          this.#writeE(parts)
          break
        case 1: // <- e, ee, s, es   (responder)
          this.#writeE(parts)
          this.#dh(this.#e, this.#re)
          parts.push(ss.encryptAndHash(this.#s.publicKey))
          this.#dh(this.#s, this.#re)
          break
        case 2: // -> s, se   (initiator)
          parts.push(ss.encryptAndHash(this.#s.publicKey))
          this.#dh(this.#s, this.#re)
          break
      }
      parts.push(ss.encryptAndHash(payload))
      return Buffer.concat(parts)
    })
  }

  #writeE(parts: Uint8Array[]): void {
    if (this.#e === undefined) this.#e = freshLocalKey()
    parts.push(this.#e.publicKey)
    this.#ss.mixHash(this.#e.publicKey)
  }

  readMessage(message: Uint8Array): Uint8Array {
    return this.#guard(false, () => {
      requireBytes(message, "message")
      const len = message.byteLength
      if (len > MAX_MESSAGE_LENGTH) throw new NoiseError("InvalidLength", `message longer than ${MAX_MESSAGE_LENGTH} bytes`)
      const min = MESSAGE_OVERHEAD[this.#index as 0 | 1 | 2]
      if (len < min) throw new NoiseError("InvalidLength", `handshake message ${this.#index + 1} shorter than ${min} bytes`)
      const ss = this.#ss
      let offset = 0
      const take = (n: number): Uint8Array => message.subarray(offset, (offset += n))
      switch (this.#index) {
        case 0: // -> e   (responder reads)
          this.#readE(take(DH_LEN))
          break
        case 1: // <- e, ee, s, es   (initiator reads)
          this.#readE(take(DH_LEN))
          this.#dh(this.#e, this.#re)
          this.#rs = new Uint8Array(ss.decryptAndHash(take(DH_LEN + TAG_LEN)))
          this.#dh(this.#e, this.#rs)
          break
        case 2: // -> s, se   (responder reads)
          this.#rs = new Uint8Array(ss.decryptAndHash(take(DH_LEN + TAG_LEN)))
          this.#dh(this.#e, this.#rs)
          break
      }
      const rest = message.subarray(offset)
      const payload = ss.decryptAndHash(rest)
      // A copy when the payload was not encrypted (message 1), so it never aliases the input.
      return payload === rest ? new Uint8Array(rest) : payload
    })
  }

  #readE(re: Uint8Array): void {
    this.#re = new Uint8Array(re)
    this.#ss.mixHash(this.#re)
  }
}

/**
 * Starts an XX handshake. The initiator writes message 1; the responder reads it.
 * Throws NoiseError for an unsupported protocol name or an inconsistent key pair.
 */
export const createHandshake = (opts: HandshakeOptions): Handshake => new XXHandshake(opts)
