/**
 * The Noise SymmetricState (chaining key ck, handshake hash h) on SHA-256, with the Noise
 * HKDF on HMAC-SHA256.
 */
import { createHash, createHmac } from "node:crypto"
import { CipherState, type CipherName } from "./CipherState.ts"
import { EMPTY, HASH_LEN } from "./Common.ts"

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
