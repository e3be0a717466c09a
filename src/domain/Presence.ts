/**
 * Presence datagrams (PROTOCOL.md section 1): the announcement, in its classic and
 * p2pchat shapes, and the bye. Decoded at the edge; inside, the types are trusted.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { clean } from "./Text.ts"

export const PROTO = "p2pchat/1"
export const MAX_DATAGRAM_BYTES = 1024
export const USERNAME_MAX = 32

/** Node 20 has these; TypeScript's ES2022 library does not declare them yet. */
export type WellFormed = string & { isWellFormed(): boolean; toWellFormed(): string }

/** A username as stored, sent and compared: its NFC form (a decomposed "é" becomes the composed one). */
export const normalizeUsername = (name: string): string => name.normalize("NFC")

/**
 * The characters a username may not hold, each with what to call it. Invisible: the
 * default-ignorable code points (U+115F, U+1160, U+3164, U+FFA0, variation selectors,
 * tags, ...) and the braille blank U+2800. A lone surrogate matches `\p{Cs}`.
 */
const FORBIDDEN: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\p{Cc}$/u, "a control character"],
  [/^\p{Cf}$/u, "a format (invisible) character"],
  [/^\p{Cs}$/u, "a lone surrogate (not valid Unicode)"],
  [/^\p{Co}$/u, "a private-use character"],
  [/^\p{Cn}$/u, "an unassigned code point"],
  [/^\p{Zl}$/u, "a line separator"],
  [/^\p{Zp}$/u, "a paragraph separator"],
  [/^[\p{Default_Ignorable_Code_Point}\u2800]$/u, "an invisible character"]
]

const ANY_FORBIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]/gu

/** A refused name fit for a message: each forbidden character as a visible `\u{200b}` escape. */
export const showUsername = (name: string): string =>
  name.replace(ANY_FORBIDDEN, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)

/** `U+200B` for "\u200b": how a refusal names a character. */
export const codePointLabel = (c: string): string => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`

/**
 * Why a username is not acceptable, or undefined when it is. The one rule of every edge
 * (presence, handshake payload, `from`, the CLI's --name): it is applied to the NFC form.
 */
export const usernameProblem = (raw: string): string | undefined => {
  const name = normalizeUsername(raw)
  const chars = [...name]
  if (chars.length < 1) return "a username needs at least 1 character"
  if (chars.length > USERNAME_MAX) return `a username has at most ${USERNAME_MAX} characters, this one has ${chars.length}`
  for (const c of chars) {
    const hit = FORBIDDEN.find(([re]) => re.test(c))
    if (hit !== undefined) return `a username cannot contain ${codePointLabel(c)} (${hit[1]})`
  }
  if (name.trim() !== name) return "a username cannot start or end with spaces"
  return undefined
}

/** A username from the wire: decoded to its NFC form, then checked by `usernameProblem`. */
export const Username = Schema.String.pipe(
  Schema.decodeTo(
    Schema.String.check(Schema.makeFilter((s: string) => usernameProblem(s) ?? true)),
    SchemaTransformation.transform({ decode: normalizeUsername, encode: (s: string) => s })
  )
)

/**
 * The registry and History key: the NFC form, lower-cased with `toLowerCase()` (Unicode
 * default lower-casing, not a full case fold: "ß" and "ss" stay apart). Classic peers
 * lower-case names too.
 */
export const usernameKey = (name: string): string => normalizeUsername(name).toLowerCase()

export const Port = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 65535 }))

/**
 * An X25519 public key, base64url without padding (43 characters, 32 bytes), in its one
 * canonical spelling: the last character's 2 spare bits are zero, so that one key is one
 * string (ids are compared as strings).
 */
export const PublicKeyId = Schema.String.check(
  Schema.makeFilter((s: string) => /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(s) || "expected a 32-byte key in base64url")
)

/** A presence stamp: the sender's wall-clock milliseconds, strictly increasing per sender. */
export const Stamp = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }))

/** An XEdDSA signature (64 bytes), base64url without padding, canonical (the last character's 4 spare bits zero). */
export const Signature = Schema.String.check(
  Schema.makeFilter((s: string) => /^[A-Za-z0-9_-]{85}[AQgw]$/.test(s) || "expected a 64-byte signature in base64url")
)

export const Announcement = Schema.Struct({
  username: Username,
  proto: Schema.optionalKey(Schema.String),
  port: Schema.optionalKey(Port),
  status: Schema.optionalKey(Schema.Literals(["online", "away"])),
  id: Schema.optionalKey(PublicKeyId),
  ts: Schema.optionalKey(Stamp),
  sig: Schema.optionalKey(Signature)
})
export type Announcement = typeof Announcement.Type

export const Bye = Schema.Struct({
  bye: Username,
  proto: Schema.optionalKey(Schema.String),
  id: Schema.optionalKey(PublicKeyId),
  ts: Schema.optionalKey(Stamp),
  sig: Schema.optionalKey(Signature)
})
export type Bye = typeof Bye.Type

export type PresenceDatagram =
  | { readonly _tag: "Announcement"; readonly value: Announcement }
  | { readonly _tag: "Bye"; readonly value: Bye }

const decodeAnnouncement = Schema.decodeUnknownResult(Announcement)
const decodeBye = Schema.decodeUnknownResult(Bye)
const utf8 = new TextDecoder("utf-8", { fatal: true })

/** Decodes one UDP payload; the failure is a short reason fit for a log line. */
export const decodePresence = (payload: Uint8Array): Result.Result<PresenceDatagram, string> => {
  if (payload.byteLength > MAX_DATAGRAM_BYTES) {
    return Result.fail(`oversized: ${payload.byteLength} bytes, more than ${MAX_DATAGRAM_BYTES}`)
  }
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(payload))
  } catch {
    return Result.fail("not UTF-8 JSON")
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return Result.fail("not a JSON object")
  }
  if (Object.hasOwn(json, "username")) {
    const r = decodeAnnouncement(json)
    return Result.isSuccess(r)
      ? signedWhole({ _tag: "Announcement", value: r.success }, "announcement")
      : Result.fail(`bad announcement: ${oneLine(r.failure.message)}`)
  }
  if (Object.hasOwn(json, "bye")) {
    const r = decodeBye(json)
    return Result.isSuccess(r)
      ? signedWhole({ _tag: "Bye", value: r.success }, "bye")
      : Result.fail(`bad bye: ${oneLine(r.failure.message)}`)
  }
  return Result.fail("neither an announcement nor a bye")
}

/** A signature covers an id and a stamp: one without them proves nothing and is refused. */
const signedWhole = (d: PresenceDatagram, what: string): Result.Result<PresenceDatagram, string> => {
  const { sig, id, ts } = d.value
  if (sig !== undefined && (id === undefined || ts === undefined)) {
    return Result.fail(`bad ${what}: a signature ("sig") needs "id" and "ts"`)
  }
  return Result.succeed(d)
}

/** A datagram that carries a signature, with the fields that signature covers. */
export interface Signed {
  readonly id: string
  readonly ts: number
  readonly sig: string
}

export const signedPart = (d: PresenceDatagram): Signed | undefined => {
  const { sig, id, ts } = d.value
  return sig !== undefined && id !== undefined && ts !== undefined ? { sig, id, ts } : undefined
}

const utf8Encoder = new TextEncoder()

/**
 * The bytes a presence signature covers (protocol: "Signed presence"): a label that keeps
 * an announcement's signature from passing as a bye's, then what the datagram means, in a
 * fixed order. The source address is not covered: a node does not know the address others
 * see it at; the stamp is what keeps a copy sent from elsewhere from counting.
 */
export const presenceSignedBytes = (d: PresenceDatagram): Uint8Array =>
  utf8Encoder.encode(JSON.stringify(
    d._tag === "Announcement"
      ? [`${PROTO} announce`, d.value.username, d.value.port ?? 6001, d.value.status ?? "online", d.value.id ?? "", d.value.ts ?? 0]
      : [`${PROTO} bye`, d.value.bye, d.value.id ?? "", d.value.ts ?? 0]
  ))

/**
 * A reason fit for one log line: white space folded, control characters escaped (peers'
 * bytes end up in reasons, and a terminal escape must not reach the terminal), capped.
 */
export const oneLine = (s: string): string => clean(s.replace(/\s+/g, " ")).slice(0, 200)

export const isP2pchat = (proto: string | undefined): boolean => proto !== undefined && proto.startsWith("p2pchat/")

/** Signs a datagram's signed bytes: the node's identity (XEdDSA), base64url. */
export type SignPresence = (bytes: Uint8Array) => string

/** The announcement a node sends, stamped and signed; optional fields only when they say something. */
export const encodeAnnouncement = (a: {
  readonly username: string
  readonly tcpPort: number
  readonly away: boolean
  readonly id: string
  readonly ts: number
}, sign: SignPresence): string => {
  const value: Announcement = {
    username: normalizeUsername(a.username),
    proto: PROTO,
    ...(a.tcpPort !== 6001 ? { port: a.tcpPort } : {}),
    status: a.away ? "away" : "online",
    id: a.id,
    ts: a.ts
  }
  return JSON.stringify({ ...value, sig: sign(presenceSignedBytes({ _tag: "Announcement", value })) })
}

export const encodeBye = (b: { readonly username: string; readonly id: string; readonly ts: number }, sign: SignPresence): string => {
  const value: Bye = { bye: normalizeUsername(b.username), proto: PROTO, id: b.id, ts: b.ts }
  return JSON.stringify({ ...value, sig: sign(presenceSignedBytes({ _tag: "Bye", value })) })
}
