/**
 * Key fingerprint for comparing identities aloud (PROTOCOL.md, "Trust"):
 * SHA-512 of the 32-byte static public key, first 60 bytes cut into 12 chunks
 * of 5 bytes, each read big-endian mod 100000, zero-padded to 5 digits and
 * joined by single spaces. Pure; no I/O.
 */
import { createHash } from "node:crypto"

const KEY_BYTES = 32
const CHUNKS = 12
const CHUNK_BYTES = 5

/**
 * @throws RangeError if `publicKey` is not 32 bytes (a static X25519 key).
 */
export const fingerprint = (publicKey: Uint8Array): string => {
  if (publicKey.length !== KEY_BYTES) {
    throw new RangeError(`public key must be ${KEY_BYTES} bytes, got ${publicKey.length}`)
  }
  const digest = createHash("sha512").update(publicKey).digest()
  const groups: string[] = []
  for (let i = 0; i < CHUNKS; i++) {
    // 40-bit values are exact in a double (readUIntBE supports up to 6 bytes).
    const value = digest.readUIntBE(i * CHUNK_BYTES, CHUNK_BYTES) % 100000
    groups.push(String(value).padStart(5, "0"))
  }
  return groups.join(" ")
}

/** The fingerprint of an announced `id` (base64url public key); null for a classic peer. */
export const fingerprintOfId = (id: string | undefined): string | null =>
  id === undefined ? null : fingerprint(new Uint8Array(Buffer.from(id, "base64url")))

/** Digits in a whole fingerprint, and the fewest `trust` accepts (a prefix of them). */
export const FINGERPRINT_DIGITS = CHUNKS * 5
export const MIN_FINGERPRINT_DIGITS = 20

/**
 * The digits of a fingerprint as a user types it: the 60 digits or at least their first
 * 20, spaces optional; or why it is not one.
 */
export const parseFingerprint = (input: string): { readonly digits: string } | { readonly problem: string } => {
  const digits = input.replace(/\s+/g, "")
  if (!/^[0-9]*$/.test(digits)) return { problem: "a fingerprint has only digits (and spaces)" }
  if (digits.length < MIN_FINGERPRINT_DIGITS || digits.length > FINGERPRINT_DIGITS) {
    return {
      problem: `a fingerprint is ${FINGERPRINT_DIGITS} digits, or at least its first ${MIN_FINGERPRINT_DIGITS}; ` +
        `this has ${digits.length}`
    }
  }
  return { digits }
}

/** Whether `digits` (from parseFingerprint) are the fingerprint of `publicKey`, or its start. */
export const fingerprintMatches = (digits: string, publicKey: Uint8Array): boolean =>
  fingerprint(publicKey).replace(/ /g, "").startsWith(digits)
