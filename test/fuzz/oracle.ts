/**
 * What the wire rules (PROTOCOL.md) say an input must do, written independently of src/:
 * reference validators for datagrams, frames and inner objects (the fuzz compares src's
 * decisions with them), and a model of a whole chat connection that predicts whether the
 * responder must take it (good), must refuse it (bad), or cannot be predicted (unknown),
 * and which acks it must send.
 */
import { classicDecrypt, classicKey24, classicShared } from "../../src/domain/Classic.ts"
import { decodeFrame, type Frame } from "../../src/domain/Frames.ts"
import { JsonSplitter } from "../../src/domain/Framing.ts"

// ---------------------------------------------------------------------------------------------
// Field rules

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
const KEY_ID = /^[A-Za-z0-9_-]{43}$/
const MESSAGE_ID = /^[\x21-\x7e]{1,128}$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/** A lone surrogate: not valid Unicode. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/**
 * What a username may not hold: control, format, private-use and unassigned code points,
 * line and paragraph separators, default-ignorable (invisible) ones and the braille blank.
 */
const NOT_IN_USERNAME = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]/u

/**
 * A username, judged in its NFC form: 1-32 code points, valid Unicode, none of
 * NOT_IN_USERNAME, no leading or trailing white space.
 */
export const isUsername = (u: unknown): u is string => {
  if (typeof u !== "string") return false
  const nfc = u.normalize("NFC")
  const n = [...nfc].length
  return n >= 1 && n <= 32 && !NOT_IN_USERNAME.test(nfc) && !LONE_SURROGATE.test(nfc) && nfc.trim() === nfc
}

/** A decoded object as the rules say a receiver keeps it: its username fields in NFC. */
const nfcNames = (o: Record<string, unknown>): Record<string, unknown> => {
  const out = { ...o }
  for (const k of ["username", "bye", "from"]) if (typeof out[k] === "string") out[k] = (out[k] as string).normalize("NFC")
  return out
}

/** What a registry or History keys a user by: the lower-cased username. */
export const isUsernameKey = (k: string): boolean => {
  if (k !== k.toLowerCase() || CONTROL_CHARS.test(k) || k.trim() !== k || k.length === 0) return false
  // Lower-casing may lengthen a name (U+0130 -> i + U+0307): allow for that.
  return [...k].length <= 64
}

export const isPort = (p: unknown): p is number => typeof p === "number" && Number.isInteger(p) && p >= 1 && p <= 65535
export const isKeyId = (s: unknown): s is string => typeof s === "string" && KEY_ID.test(s)
export const isMessageId = (s: unknown): s is string => typeof s === "string" && MESSAGE_ID.test(s)
const isSafeInt = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n)
const optional = (o: object, k: string, ok: (v: unknown) => boolean): boolean => !Object.hasOwn(o, k) || ok((o as any)[k])

const utf8 = new TextDecoder("utf-8", { fatal: true })

const parseObject = (text: string): object | undefined => {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return undefined
  }
  return typeof v === "object" && v !== null && !Array.isArray(v) ? v : undefined
}

const pick = (o: object, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (Object.hasOwn(o, k)) out[k] = (o as any)[k]
  return out
}

// ---------------------------------------------------------------------------------------------
// Datagrams

export type PresenceVerdict =
  | { readonly ok: false }
  | { readonly ok: true; readonly tag: "Announcement" | "Bye"; readonly value: Record<string, unknown> }

/** PROTOCOL.md 1: at most 1024 bytes of UTF-8 JSON; an announcement (username) or a bye. */
export const referencePresence = (payload: Uint8Array): PresenceVerdict => {
  if (payload.byteLength > 1024) return { ok: false }
  let text: string
  try {
    text = utf8.decode(payload)
  } catch {
    return { ok: false }
  }
  const o = parseObject(text)
  if (o === undefined) return { ok: false }
  if (Object.hasOwn(o, "username")) {
    const ok = isUsername((o as any).username) &&
      optional(o, "proto", (v) => typeof v === "string") &&
      optional(o, "port", isPort) &&
      optional(o, "status", (v) => v === "online" || v === "away") &&
      optional(o, "id", isKeyId)
    return ok ? { ok: true, tag: "Announcement", value: nfcNames(pick(o, ["username", "proto", "port", "status", "id"])) } : { ok: false }
  }
  if (Object.hasOwn(o, "bye")) {
    const ok = isUsername((o as any).bye) && optional(o, "proto", (v) => typeof v === "string") && optional(o, "id", isKeyId)
    return ok ? { ok: true, tag: "Bye", value: nfcNames(pick(o, ["bye", "proto", "id"])) } : { ok: false }
  }
  return { ok: false }
}

// ---------------------------------------------------------------------------------------------
// Frames and inner objects

/** The defining key of each frame, in the order a frame with several is classified. */
const FRAME_KEYS: ReadonlyArray<readonly [string, Frame["_tag"], ReadonlyArray<string>, (o: any) => boolean]> = [
  ["hs", "Handshake", ["proto", "hs"], (o) => typeof o.hs === "string" && BASE64.test(o.hs) && optional(o, "proto", (v) => typeof v === "string")],
  ["ct", "Cipher", ["ct"], (o) => typeof o.ct === "string" && BASE64.test(o.ct)],
  ["unencrypted_message", "Plain", ["unencrypted_message", "id", "from"], (o) =>
    typeof o.unencrypted_message === "string" && optional(o, "id", isMessageId) && optional(o, "from", isUsername)],
  ["encrypted_message", "Encrypted", ["encrypted_message", "id", "from"], (o) =>
    typeof o.encrypted_message === "string" && optional(o, "id", isMessageId) && optional(o, "from", isUsername)],
  ["key", "Key", ["key"], (o) => isSafeInt(o.key)],
  ["ack", "Ack", ["ack"], (o) => isMessageId(o.ack)]
]

export type FrameVerdict =
  | { readonly ok: false }
  | { readonly ok: true; readonly tag: Frame["_tag"]; readonly value: Record<string, unknown> }

export const referenceFrame = (text: string): FrameVerdict => {
  const o = parseObject(text)
  if (o === undefined) return { ok: false }
  for (const [key, tag, keys, valid] of FRAME_KEYS) {
    if (!Object.hasOwn(o, key)) continue
    return valid(o) ? { ok: true, tag, value: nfcNames(pick(o, keys)) } : { ok: false }
  }
  return { ok: false }
}

export type InnerVerdict =
  | { readonly ok: false }
  | { readonly ok: true; readonly tag: "msg" | "ack"; readonly value: Record<string, unknown> }

/** Inner objects of a secure session: `msg` (id, text, sentAt) or `ack` (id). */
export const referenceInner = (text: string): InnerVerdict => {
  const o = parseObject(text) as any
  if (o === undefined) return { ok: false }
  if (o.type === "msg" && isMessageId(o.id) && typeof o.text === "string" && typeof o.sentAt === "string") {
    return { ok: true, tag: "msg", value: pick(o, ["type", "id", "text", "sentAt"]) }
  }
  if (o.type === "ack" && isMessageId(o.id)) return { ok: true, tag: "ack", value: pick(o, ["type", "id"]) }
  return { ok: false }
}

// ---------------------------------------------------------------------------------------------
// A connection, as the responder must see it

export interface StreamSplit {
  /** Complete frames, in stream order. */
  readonly frames: ReadonlyArray<string>
  /** The splitter's verdict when the stream is broken (then no later frame exists). */
  readonly framingError: string | undefined
  /** Bytes of an unfinished frame at the end of the stream. */
  readonly pending: number
}

/**
 * Bytes pushed into a splitter at a time, as the Responder does (Connection.ts): the
 * splitter's cost grows with the square of the push size on strings full of escapes.
 */
export const PUSH_BYTES = 8 * 1024

/** Splits a whole stream with the protocol's splitter (itself checked by the pure properties). */
export const splitStream = (bytes: Uint8Array): StreamSplit => {
  const splitter = new JsonSplitter()
  const frames: Array<string> = []
  for (let o = 0; o < bytes.length || o === 0; o += PUSH_BYTES) {
    const r = splitter.push(bytes.subarray(o, o + PUSH_BYTES))
    frames.push(...r.frames)
    if (r.error !== undefined) return { frames, framingError: r.error._tag, pending: 0 }
    if (bytes.length === 0) break
  }
  return { frames, framingError: undefined, pending: splitter.pending() }
}

export type Outcome = "good" | "bad" | "unknown"

export interface Prediction {
  readonly outcome: Outcome
  /** Why (bad) or what stopped the prediction (unknown). */
  readonly why: string
  /** The connection ends with an unfinished frame: the responder waits until the peer hangs up. */
  readonly endsMidFrame: boolean
  /** Ack ids the responder must send, in order, for the frames before the end. */
  readonly acks: ReadonlyArray<string>
  /** Key answers it must send (classic). */
  readonly keyAnswers: number
  /** Texts it must store (secure sessions: the frames before any bad one). */
  readonly stored: ReadonlyArray<string>
}

const finish = (s: StreamSplit, acks: Array<string>, keyAnswers: number, stored: Array<string>): Prediction => {
  if (s.framingError !== undefined) return { outcome: "bad", why: s.framingError, endsMidFrame: false, acks, keyAnswers, stored }
  if (s.pending > 0) return { outcome: "bad", why: "ClosedMidFrame", endsMidFrame: true, acks, keyAnswers, stored }
  return { outcome: "good", why: "", endsMidFrame: false, acks, keyAnswers, stored }
}

/**
 * The classic and plain dialects: plain messages are stored (acked when they carry an id);
 * `key` is answered with the responder's number; `encrypted_message` needs a key and must
 * decrypt under it; an `hs` after the first frame, an `ack` or a `ct` is refused.
 * `answers`: the responder's key numbers in order, when the caller knows them.
 */
export const predictClassic = (s: StreamSplit, answers: ReadonlyArray<number> | undefined): Prediction => {
  const acks: Array<string> = []
  let keys = 0
  let key24: Buffer | undefined | "unknown"
  const stop = (outcome: Outcome, why: string): Prediction => ({ outcome, why, endsMidFrame: false, acks, keyAnswers: keys, stored: [] })
  for (let i = 0; i < s.frames.length; i++) {
    const decoded = decodeFrame(s.frames[i]!)
    if (decoded._tag === "Failure") return stop("bad", "BadFrame")
    const f = decoded.success
    switch (f._tag) {
      case "Plain":
        if (f.frame.id !== undefined) acks.push(f.frame.id)
        break
      case "Key": {
        const b = answers?.[keys]
        keys++
        key24 = b === undefined || !Number.isSafeInteger(b) ? "unknown" : classicKey24(classicShared(f.frame.key, b))
        break
      }
      case "Encrypted": {
        if (key24 === undefined) return stop("bad", "NoKey")
        if (key24 === "unknown") return stop("unknown", "encrypted frame under a key not known to the fuzzer")
        const r = classicDecrypt(key24, f.frame.encrypted_message)
        if (!r.ok) return stop("bad", "DecryptFailed")
        if (f.frame.id !== undefined) acks.push(f.frame.id)
        break
      }
      case "Handshake":
        if (i === 0) return stop("unknown", "secure session")
        return stop("bad", "Unexpected")
      case "Ack":
      case "Cipher":
        return stop("bad", "Unexpected")
    }
  }
  return finish(s, acks, keys, [])
}

/** What the fuzzer sent as the k-th transport frame of a secure session. */
export interface SentCipher {
  readonly ct: string
  /** The inner object: a well-formed message (stored and acked), garbage (refused), or other. */
  readonly inner: { readonly kind: "msg"; readonly id: string; readonly text: string } | { readonly kind: "bad" } | { readonly kind: "other" }
}

/**
 * A secure session after a completed handshake: the k-th frame must be the k-th `ct` the
 * sender made (any other ct fails to decrypt: Noise nonces count up), and its inner object
 * must be valid. The first frame that is not ends the session.
 */
export const predictSecureTransport = (s: StreamSplit, sent: ReadonlyArray<SentCipher>): Prediction => {
  const acks: Array<string> = []
  const stored: Array<string> = []
  const stop = (outcome: Outcome, why: string): Prediction => ({ outcome, why, endsMidFrame: false, acks, keyAnswers: 0, stored })
  for (let i = 0; i < s.frames.length; i++) {
    const decoded = decodeFrame(s.frames[i]!)
    if (decoded._tag === "Failure") return stop("bad", "BadFrame")
    const f = decoded.success
    const expected = sent[i]
    if (f._tag !== "Cipher") return stop("bad", `a ${f._tag} frame in a secure session`)
    if (expected === undefined || f.frame.ct !== expected.ct) return stop("bad", "a ct that does not decrypt")
    if (expected.inner.kind === "bad") return stop("bad", "an invalid inner object")
    if (expected.inner.kind === "other") return stop("unknown", "an inner object the fuzzer does not model")
    acks.push(expected.inner.id)
    stored.push(expected.inner.text)
  }
  return finish(s, acks, 0, stored)
}
