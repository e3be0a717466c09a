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
 * Structure follows the spec, one module each under ./noise/: CipherState.ts (k, n),
 * SymmetricState.ts (ck, h) and HandshakeState.ts (specialised to XX), over Dh.ts (X25519)
 * and Common.ts (types, constants, NoiseError). This module is the public API.
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
export { CipherState } from "./noise/CipherState.ts"
export {
  DH_LEN,
  type Handshake,
  type HandshakeOptions,
  HASH_LEN,
  type KeyPair,
  MAX_MESSAGE_LENGTH,
  MAX_PLAINTEXT_LENGTH,
  NoiseError,
  type NoiseErrorCode,
  PROTOCOL_NAME,
  SUPPORTED_PROTOCOLS,
  TAG_LEN,
  type Transport
} from "./noise/Common.ts"
export { generateKeyPair, publicKeyOf } from "./noise/Dh.ts"
export { createHandshake } from "./noise/HandshakeState.ts"
export { SymmetricState } from "./noise/SymmetricState.ts"
