/**
 * Classic dialect cipher (PROTOCOL.md, "Classic frames"): key derivation and
 * 3DES-EDE in ECB mode with PKCS#5 padding, bit-compatible with the original
 * Python program (pyDes). It gives NO real security: there are only 19 keys
 * (17 distinct ones, see below) and ECB leaks repeated blocks.
 *
 * Quirks of the original, reproduced on purpose:
 * - `key24` is the *text* of a base64url string padded with ASCII '0', so the
 *   second and third DES keys are both "00000000" and EDE collapses to single
 *   DES under the first 8 bytes (E_K3(D_K2(x)) = x when K2 = K3).
 * - DES ignores the low (parity) bit of each key byte, and 'N' (0x4E) / 'O'
 *   (0x4F) differ only in that bit: shared 4 ("NA==") and 8 ("OA=="), and
 *   shared 5 ("NQ==") and 9 ("OQ=="), are the same effective key.
 * - pyDes PAD_PKCS5 pads 1..8 bytes of value n (a full block when the input
 *   is a multiple of 8), which is exactly OpenSSL's PKCS#7 for 8-byte blocks.
 *   pyDes does not check padding when decrypting; we do (stricter), so a wrong
 *   key is reported instead of yielding garbage most of the time.
 *
 * Pure functions over node:crypto; no I/O.
 */
import { encodeFrame } from "./Framing.ts"
import { createCipheriv, createDecipheriv, randomInt } from "node:crypto"

/** Shown to the user whenever the classic cipher is in use. */
export const CLASSIC_WARNING =
  "Classic encryption (3DES with one of only 19 keys) is NOT secure: anyone on the LAN can read these messages."

const MODULUS = 19n
const KEY_BYTES = 24
const BLOCK = 8
const ALGORITHM = "des-ede3-ecb"

/** Python's `%`: the result has the sign of the divisor (here always 0..m-1). */
const pyMod = (n: bigint, m: bigint): bigint => ((n % m) + m) % m

/**
 * The shared classic key: `((2 ^ (a % 19)) ^ b) % 19` with Python semantics
 * (arbitrary-precision two's complement XOR, non-negative modulo), so any safe
 * integer the peer sends gives the same value as the original program.
 * `a` is reduced mod 19 first, like the original initiator does with the number
 * the user typed (input 25 sends and uses 6). Result is in 0..18.
 * @throws RangeError if `a` or `b` is not a safe integer (validate wire input first).
 */
export const classicShared = (a: number, b: number): number => {
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) {
    throw new RangeError(`classic key parts must be safe integers, got ${a} and ${b}`)
  }
  const reducedA = pyMod(BigInt(a), MODULUS)
  return Number(pyMod((2n ^ reducedA) ^ BigInt(b), MODULUS))
}

/**
 * The 24-byte 3DES key: base64url (with '=' padding, like Python's
 * `urlsafe_b64encode`) of the ASCII decimal digits of `shared`, right-padded
 * with ASCII '0' to 24 bytes. E.g. 12 -> "MTI=00000000000000000000".
 * @throws RangeError if `shared` is not an integer in 0..18.
 */
export const classicKey24 = (shared: number): Buffer => {
  if (!Number.isInteger(shared) || shared < 0 || shared >= Number(MODULUS)) {
    throw new RangeError(`classic shared key must be an integer in 0..18, got ${shared}`)
  }
  // Buffer's "base64url" drops the '=' padding; Python keeps it. The digits
  // "0".."18" never produce '+' or '/', so standard base64 is the same text.
  const text = Buffer.from(String(shared), "ascii").toString("base64")
  return Buffer.from(text.padEnd(KEY_BYTES, "0"), "ascii")
}

/** A random classic key part in 0..18 (what a node sends in `{"key": n}`). */
export const randomClassicKey = (): number => randomInt(0, Number(MODULUS))

const checkKey = (key24: Uint8Array): string | undefined =>
  key24.length === KEY_BYTES ? undefined : `key must be ${KEY_BYTES} bytes, got ${key24.length}`

/**
 * 3DES-EDE ECB with PKCS#5 padding over the UTF-8 bytes of `text`; returns
 * standard base64. (A lone surrogate in `text` is encoded as U+FFFD, as by any
 * UTF-8 encoder.)
 * @throws RangeError if `key24` is not 24 bytes (a programming error).
 */
export const classicEncrypt = (key24: Uint8Array, text: string): string => {
  const bad = checkKey(key24)
  if (bad !== undefined) throw new RangeError(bad)
  const cipher = createCipheriv(ALGORITHM, key24, null) // auto padding = PKCS#7 = PKCS#5 here
  return Buffer.concat([cipher.update(Buffer.from(text, "utf8")), cipher.final()]).toString("base64")
}

export type ClassicDecryptResult =
  | { readonly ok: true; readonly text: string }
  | { readonly ok: false; readonly reason: string }

const fail = (reason: string): ClassicDecryptResult => ({ ok: false, reason })

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/**
 * Inverse of {@link classicEncrypt}. Never throws: malformed base64, a
 * ciphertext that is empty or not a multiple of 8 bytes, bad PKCS#5 padding
 * (usually a wrong key), or plaintext that is not valid UTF-8 all give
 * `{ ok: false, reason }`.
 */
export const classicDecrypt = (key24: Uint8Array, b64: string): ClassicDecryptResult => {
  const bad = checkKey(key24)
  if (bad !== undefined) return fail(bad)
  if (typeof b64 !== "string") return fail("ciphertext is not a string")
  const bytes = Buffer.from(b64, "base64")
  // Node's decoder is lenient (skips junk, accepts url-safe and missing '=');
  // only accept the canonical standard base64 that the original produces.
  if (bytes.toString("base64") !== b64) return fail("ciphertext is not valid standard base64")
  if (bytes.length === 0 || bytes.length % BLOCK !== 0) {
    return fail(`ciphertext length ${bytes.length} is not a positive multiple of ${BLOCK}`)
  }
  let padded: Buffer
  try {
    const decipher = createDecipheriv(ALGORITHM, key24, null)
    decipher.setAutoPadding(false)
    padded = Buffer.concat([decipher.update(bytes), decipher.final()])
  } catch (error) {
    return fail(`3DES decryption failed: ${error instanceof Error ? error.message : String(error)}`)
  }
  const pad = padded[padded.length - 1] ?? 0
  if (pad < 1 || pad > BLOCK) return fail("bad PKCS#5 padding (wrong key?)")
  for (let i = padded.length - pad; i < padded.length; i++) {
    if (padded[i] !== pad) return fail("bad PKCS#5 padding (wrong key?)")
  }
  try {
    return { ok: true, text: utf8.decode(padded.subarray(0, padded.length - pad)) }
  } catch {
    return fail("plaintext is not valid UTF-8 (wrong key?)")
  }
}

// ---------------------------------------------------------------------------------------------
// Frame sizes: what fits one classic read, and one p2pchat frame

/** A classic responder reads each frame with one 1024-byte read. */
export const CLASSIC_FRAME_LIMIT = 1024

const frameBytes = (frame: object): number => Buffer.byteLength(encodeFrame(frame), "utf8")
const PLAIN_OVERHEAD = frameBytes({ unencrypted_message: "" })
const ENCRYPTED_OVERHEAD = frameBytes({ encrypted_message: "" })
const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3)

/** Bytes on the wire of the frame carrying `textBytes` bytes of UTF-8 text to a classic peer. */
export const classicFrameBytes = (textBytes: number, encrypted: boolean): number =>
  encrypted
    ? ENCRYPTED_OVERHEAD + base64Length(8 * (Math.floor(textBytes / 8) + 1)) // 3DES + PKCS#5: 1..8 bytes of padding
    : PLAIN_OVERHEAD + base64Length(textBytes)

/** The most UTF-8 bytes of text one classic frame can carry within CLASSIC_FRAME_LIMIT. */
export const classicPartBytes = (encrypted: boolean): number => {
  let n = CLASSIC_FRAME_LIMIT
  while (classicFrameBytes(n, encrypted) > CLASSIC_FRAME_LIMIT) n--
  return n
}

/**
 * Cuts a text into the fewest parts, in order, whose frames each fit one classic read;
 * cuts fall between characters (code points), never inside a UTF-8 sequence.
 */
export const splitForClassic = (text: string, encrypted: boolean): ReadonlyArray<string> => {
  const max = classicPartBytes(encrypted)
  if (Buffer.byteLength(text, "utf8") <= max) return [text]
  const parts: Array<string> = []
  let current = ""
  let bytes = 0
  for (const ch of text) {
    const n = Buffer.byteLength(ch, "utf8")
    if (bytes + n > max) {
      parts.push(current)
      current = ""
      bytes = 0
    }
    current += ch
    bytes += n
  }
  parts.push(current)
  return parts
}

/**
 * Bytes between the braces of the frame that carries `text` to a p2pchat peer: what its
 * splitter holds against MAX_FRAME_BYTES.
 */
export const p2pFrameBytes = (text: string, encrypted: boolean, id: string, from: string | undefined): number => {
  const n = Buffer.byteLength(text, "utf8")
  const body = encrypted ? "A".repeat(base64Length(8 * (Math.floor(n / 8) + 1))) : "A".repeat(base64Length(n))
  const frame = { [encrypted ? "encrypted_message" : "unencrypted_message"]: body, id, ...(from !== undefined ? { from } : {}) }
  return Buffer.byteLength(JSON.stringify(frame), "utf8")
}
