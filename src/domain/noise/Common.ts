/**
 * Noise XX: the public types and constants, the one error type, and the argument check
 * every part shares. See ../Noise.ts for the protocol and its error behaviour.
 */

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
  /** encrypt's message as its pieces in order (body, tag), not joined: for a writev. */
  encryptPieces(plaintext: Uint8Array): ReadonlyArray<Uint8Array>
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
// Helpers shared by the parts

export const EMPTY = new Uint8Array(0)

export const requireBytes = (value: unknown, what: string): Uint8Array => {
  if (!(value instanceof Uint8Array)) {
    throw new NoiseError("InvalidArgument", `${what} must be a Uint8Array`)
  }
  return value
}
