/**
 * The Noise HandshakeState specialised to XX (-> e; <- e, ee, s, es; -> s, se), and the
 * Transport that split() hands out once the handshake is complete.
 */
import type { CipherName, CipherState } from "./CipherState.ts"
import {
  DH_LEN,
  EMPTY,
  type Handshake,
  type HandshakeOptions,
  MAX_MESSAGE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  NoiseError,
  PROTOCOL_NAME,
  requireBytes,
  TAG_LEN,
  type Transport
} from "./Common.ts"
import { dh, freshLocalKey, type LocalKey, localKey } from "./Dh.ts"
import { SymmetricState } from "./SymmetricState.ts"

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
  encryptPieces(plaintext: Uint8Array): ReadonlyArray<Uint8Array> {
    requireBytes(plaintext, "plaintext")
    if (plaintext.byteLength > MAX_PLAINTEXT_LENGTH) {
      throw new NoiseError("InvalidLength", `plaintext longer than ${MAX_PLAINTEXT_LENGTH} bytes`)
    }
    return this.#send.encryptWithAdPieces(EMPTY, plaintext)
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
