/**
 * What the wire rules (PROTOCOL.md) say an input must do, written independently of src/:
 * reference validators for datagrams, frames and inner objects (the fuzz compares src's
 * decisions with them), and a model of a whole chat connection that predicts whether the
 * responder must take it (good), must refuse it (bad), or cannot be predicted (unknown),
 * and which acks it must send.
 */
import { createPublicKey, verify as edVerify } from "node:crypto"
import { classicDecrypt, classicKey24, classicShared } from "../../src/domain/Classic.ts"
import { decodeFrame, type Frame } from "../../src/domain/Frames.ts"
import { JsonSplitter } from "../../src/domain/Framing.ts"

// ---------------------------------------------------------------------------------------------
// Field rules

// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/
/**
 * A key id: 32 bytes in base64url without padding, spelled canonically (the last character's
 * 2 spare bits zero), so that one key has one id.
 */
const KEY_ID = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/
/**
 * A presence signature: 64 bytes in base64url without padding (86 characters), spelled
 * canonically (the last character's 4 spare bits zero), so that one signature has one spelling.
 */
const SIGNATURE = /^[A-Za-z0-9_-]{85}[AQgw]$/
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
/** A presence stamp: a positive safe integer. */
export const isStamp = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 1
export const isSignature = (s: unknown): s is string => typeof s === "string" && SIGNATURE.test(s)
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

/**
 * PROTOCOL.md 1: at most 1024 bytes of UTF-8 JSON; an announcement (username) or a bye.
 * Signed presence: optional `ts` (a stamp) and `sig` (a signature); a `sig` proves something
 * only about an `id` and a `ts`, so one without both is refused.
 */
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
  const signedWhole = (v: Record<string, unknown>) => v["sig"] === undefined || (v["id"] !== undefined && v["ts"] !== undefined)
  const signing = (o: object) =>
    optional(o, "id", isKeyId) && optional(o, "ts", isStamp) && optional(o, "sig", isSignature)
  if (Object.hasOwn(o, "username")) {
    const ok = isUsername((o as any).username) &&
      optional(o, "proto", (v) => typeof v === "string") &&
      optional(o, "port", isPort) &&
      optional(o, "status", (v) => v === "online" || v === "away") &&
      signing(o)
    const value = nfcNames(pick(o, ["username", "proto", "port", "status", "id", "ts", "sig"]))
    return ok && signedWhole(value) ? { ok: true, tag: "Announcement", value } : { ok: false }
  }
  if (Object.hasOwn(o, "bye")) {
    const ok = isUsername((o as any).bye) && optional(o, "proto", (v) => typeof v === "string") && signing(o)
    const value = nfcNames(pick(o, ["bye", "proto", "id", "ts", "sig"]))
    return ok && signedWhole(value) ? { ok: true, tag: "Bye", value } : { ok: false }
  }
  return { ok: false }
}

// ---------------------------------------------------------------------------------------------
// Signed presence

/**
 * What a presence signature covers (protocol: "Signed presence"): the JSON text of an array
 * of a label (announce or bye, so that one cannot pass for the other), then the datagram's
 * meaning in a fixed order, with the defaults filled in (port 6001, status online); the
 * username in its NFC form. `proto` and any other field are not covered.
 */
export const presenceSignedText = (tag: "Announcement" | "Bye", v: Readonly<Record<string, unknown>>): string =>
  JSON.stringify(
    tag === "Announcement"
      ? ["p2pchat/1 announce", v["username"], v["port"] ?? 6001, v["status"] ?? "online", v["id"] ?? "", v["ts"] ?? 0]
      : ["p2pchat/1 bye", v["bye"], v["id"] ?? "", v["ts"] ?? 0]
  )

const FIELD_P = (1n << 255n) - 19n
const GROUP_L = (1n << 252n) + 27742317777372353535851937790883648493n
/**
 * The u-coordinates (below p) of the X25519 points of small order: such a key proves no
 * secret (libsodium's blocklist: 0, 1, the two of order 8, and p - 1).
 */
const SMALL_ORDER_U: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  FIELD_P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n
])
const littleEndian = (bytes: Uint8Array): bigint => BigInt("0x" + (Buffer.from(bytes).reverse().toString("hex") || "0"))
const fieldPow = (b: bigint, e: bigint): bigint => {
  let r = 1n
  let x = b % FIELD_P
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % FIELD_P
    x = (x * x) % FIELD_P
  }
  return r
}
/** The Ed25519 public key of each id seen (null: the id is refused), worked out once. */
const edKeys = new Map<string, ReturnType<typeof createPublicKey> | null>()
const edKeyOf = (id: string) => {
  let key = edKeys.get(id)
  if (key !== undefined) return key
  key = null
  const u = littleEndian(Buffer.from(id, "base64url"))
  // Refused: a u that is not below p (as 256 bits: a set top bit too), or of small order.
  if (u < FIELD_P && !SMALL_ORDER_U.has(u)) {
    // XEdDSA: the Edwards point with y = (u - 1) / (u + 1) and an even x (sign bit 0).
    const y = ((u - 1n + FIELD_P) * fieldPow(u + 1n, FIELD_P - 2n)) % FIELD_P
    const x = Buffer.from(y.toString(16).padStart(64, "0"), "hex").reverse().toString("base64url")
    try {
      key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" })
    } catch {
      key = null
    }
  }
  if (edKeys.size > 10_000) edKeys.clear()
  edKeys.set(id, key)
  return key
}

/**
 * Whether a decoded datagram's signature (`sig`, by `id`, over `presenceSignedText`) is good:
 * an XEdDSA signature is an Ed25519 one (RFC 8032: s below L) against the Edwards form of
 * the X25519 key.
 */
export const referenceSignatureOk = (tag: "Announcement" | "Bye", v: Readonly<Record<string, unknown>>): boolean => {
  const { id, sig } = v
  if (typeof id !== "string" || typeof sig !== "string" || !isStamp(v["ts"])) return false
  const signature = Buffer.from(sig, "base64url")
  if (signature.byteLength !== 64 || littleEndian(signature.subarray(32)) >= GROUP_L) return false
  const key = edKeyOf(id)
  if (key === null) return false
  try {
    return edVerify(null, Buffer.from(presenceSignedText(tag, v), "utf8"), key, signature)
  } catch {
    return false
  }
}

// ---------------------------------------------------------------------------------------------
// The registry, as Discovery and the rules must leave it

/** A registry entry as the rules make it (the fields that the rules decide). */
export interface ModelPeer {
  readonly username: string
  readonly key: string
  readonly address: string
  readonly udpPort: number
  readonly port: number
  readonly proto: "classic" | "p2pchat/1"
  readonly id: string | undefined
  readonly manualAway: boolean
  readonly signed: boolean
}

/** What one datagram must do. */
export interface Fate {
  readonly counted: "accepted" | "own" | "rejected"
  /** Why it was rejected: it breaks the wire rules, its stamp is not fresh, its signature is bad. */
  readonly reason?: "decode" | "replayed" | "bad signature"
  readonly signed: boolean
  /** What it did to the registry. */
  readonly effect: "registered" | "updated" | "kept" | "removed" | "none"
  readonly key?: string
}

/** A registry key: the NFC form of the name, lower-cased (Unicode default lower-casing). */
const registryKey = (name: string): string => name.normalize("NFC").toLowerCase()

/**
 * The registry a node must hold after a sequence of datagrams, each from a source address
 * and port, with no limit reached and nothing expired (the fuzz node's limits and timers
 * are set so). The rules:
 * - Discovery: a datagram that breaks the wire rules is rejected; one with the node's own id
 *   is its own; a signed one is rejected as replayed when its stamp is not above the last
 *   stamp accepted from its key, then as a bad signature when the signature is not good; the
 *   rest is accepted, and a signed one's stamp becomes its key's last when it registered,
 *   updated or removed an entry (a claim that changed nothing leaves no stamp).
 * - An announcement of a name nobody holds registers it. For a held name:
 *   a signed claim replaces the entry, unless the entry is signed by another key;
 *   an unsigned claim never touches a signed entry, nor another identity's entry (the
 *   classic identity, without id, is one), nor a keyed entry from another address;
 *   otherwise it refreshes the entry. A signed entry stays signed.
 * - A bye removes the entry of its name when the identity is the entry's, and it is signed,
 *   or the entry is unsigned and the bye comes from the entry's address.
 */
export class PresenceModel {
  readonly entries = new Map<string, ModelPeer>()
  /** The last stamp accepted from each key. */
  readonly stamps = new Map<string, number>()
  readonly counts = { accepted: 0, own: 0, rejected: 0, decode: 0, replayed: 0, badSignature: 0 }
  /** What accepted datagrams did, by "signed effect" / "unsigned effect". */
  readonly effects: Record<string, number> = {}
  /** The datagrams that touched each key (case index and description), the latest few. */
  readonly history = new Map<string, Array<string>>()

  constructor(private readonly ownId: string | undefined) {}

  private touch(key: string, what: string): void {
    const list = this.history.get(key) ?? []
    list.push(what)
    if (list.length > 6) list.shift()
    this.history.set(key, list)
  }

  receive(payload: Uint8Array, address: string, udpPort: number, what: string): Fate {
    const v = referencePresence(payload)
    if (!v.ok) {
      this.counts.rejected++
      this.counts.decode++
      return { counted: "rejected", reason: "decode", signed: false, effect: "none" }
    }
    const d = v.value
    if (d["id"] !== undefined && d["id"] === this.ownId) {
      this.counts.own++
      return { counted: "own", signed: false, effect: "none" }
    }
    const signed = d["sig"] !== undefined
    const key = registryKey((v.tag === "Announcement" ? d["username"] : d["bye"]) as string)
    if (signed) {
      const id = d["id"] as string
      const ts = d["ts"] as number
      const last = this.stamps.get(id)
      if (last !== undefined && ts <= last) {
        this.counts.rejected++
        this.counts.replayed++
        this.touch(key, `${what} (replayed)`)
        return { counted: "rejected", reason: "replayed", signed, effect: "none", key }
      }
      if (!referenceSignatureOk(v.tag, d)) {
        this.counts.rejected++
        this.counts.badSignature++
        this.touch(key, `${what} (bad signature)`)
        return { counted: "rejected", reason: "bad signature", signed, effect: "none", key }
      }
    }
    this.counts.accepted++
    const effect = v.tag === "Announcement" ? this.announce(d, key, address, udpPort, signed) : this.bye(d, key, address, signed)
    // a signed datagram's stamp becomes its key's last only when it changed the registry
    if (signed && (effect === "registered" || effect === "updated" || effect === "removed")) this.stamps.set(d["id"] as string, d["ts"] as number)
    this.touch(key, `${what} (${signed ? "signed" : "unsigned"} ${v.tag === "Announcement" ? "announcement" : "bye"}: ${effect})`)
    const label = `${signed ? "signed" : "unsigned"} ${effect}`
    this.effects[label] = (this.effects[label] ?? 0) + 1
    return { counted: "accepted", signed, effect, key }
  }

  private announce(d: Record<string, unknown>, key: string, address: string, udpPort: number, signed: boolean): Fate["effect"] {
    const id = d["id"] as string | undefined
    const claim: ModelPeer = {
      username: d["username"] as string,
      key,
      address,
      udpPort,
      port: (d["port"] as number | undefined) ?? 6001,
      // `proto` is not signed, so a signed announcement is a p2pchat one whatever it says
      proto: signed || (typeof d["proto"] === "string" && d["proto"].startsWith("p2pchat/")) ? "p2pchat/1" : "classic",
      id,
      manualAway: d["status"] === "away",
      signed
    }
    const held = this.entries.get(key)
    if (held === undefined) {
      this.entries.set(key, claim)
      return "registered"
    }
    const sameIdentity = held.id === id
    const takes = signed
      ? !held.signed || sameIdentity
      : !held.signed && sameIdentity && (held.id === undefined || held.address === address)
    if (!takes) return "kept"
    this.entries.set(key, { ...claim, signed: held.signed || signed })
    return "updated"
  }

  private bye(d: Record<string, unknown>, key: string, address: string, signed: boolean): Fate["effect"] {
    const held = this.entries.get(key)
    if (held === undefined || held.id !== d["id"]) return "none"
    if (!signed && (held.signed || held.address !== address)) return "none"
    this.entries.delete(key)
    return "removed"
  }
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
