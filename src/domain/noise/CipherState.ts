/**
 * The Noise CipherState: ChaChaPoly or AESGCM (node:crypto) with the Noise nonce encodings.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto"
import { NoiseError, TAG_LEN } from "./Common.ts"

export type CipherName = "ChaChaPoly" | "AESGCM"

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
    const pieces = this.encryptWithAdPieces(ad, plaintext)
    if (pieces.length === 1) return pieces[0]
    const [body, tag] = pieces
    const out = Buffer.allocUnsafe(body.byteLength + tag.byteLength)
    out.set(body, 0)
    out.set(tag, body.byteLength)
    return out
  }

  /**
   * EncryptWithAd as the pieces of its output, in order, not joined: the encrypted body and
   * the 16-byte tag (the plaintext alone while there is no key). For a caller that writes
   * them out as they are (a socket's writev), so a large message is not copied once more.
   */
  encryptWithAdPieces(ad: Uint8Array, plaintext: Uint8Array): [Uint8Array] | [Uint8Array, Uint8Array] {
    const key = this.#key
    if (key === undefined) return [plaintext]
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
    this.#advance()
    return [body, tag]
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
