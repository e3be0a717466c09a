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

/** An X25519 public key, base64url without padding (43 characters, 32 bytes). */
export const PublicKeyId = Schema.String.check(
  Schema.makeFilter((s: string) => /^[A-Za-z0-9_-]{43}$/.test(s) || "expected a 32-byte key in base64url")
)

export const Announcement = Schema.Struct({
  username: Username,
  proto: Schema.optionalKey(Schema.String),
  port: Schema.optionalKey(Port),
  status: Schema.optionalKey(Schema.Literals(["online", "away"])),
  id: Schema.optionalKey(PublicKeyId)
})
export type Announcement = typeof Announcement.Type

export const Bye = Schema.Struct({
  bye: Username,
  proto: Schema.optionalKey(Schema.String),
  id: Schema.optionalKey(PublicKeyId)
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
      ? Result.succeed({ _tag: "Announcement", value: r.success })
      : Result.fail(`bad announcement: ${oneLine(r.failure.message)}`)
  }
  if (Object.hasOwn(json, "bye")) {
    const r = decodeBye(json)
    return Result.isSuccess(r)
      ? Result.succeed({ _tag: "Bye", value: r.success })
      : Result.fail(`bad bye: ${oneLine(r.failure.message)}`)
  }
  return Result.fail("neither an announcement nor a bye")
}

/**
 * A reason fit for one log line: white space folded, control characters escaped (peers'
 * bytes end up in reasons, and a terminal escape must not reach the terminal), capped.
 */
export const oneLine = (s: string): string => clean(s.replace(/\s+/g, " ")).slice(0, 200)

export const isP2pchat = (proto: string | undefined): boolean => proto !== undefined && proto.startsWith("p2pchat/")

/** The announcement a node sends; optional fields only when they say something. */
export const encodeAnnouncement = (a: {
  readonly username: string
  readonly tcpPort: number
  readonly away: boolean
  readonly id: string | undefined
}): string =>
  JSON.stringify({
    username: normalizeUsername(a.username),
    proto: PROTO,
    ...(a.tcpPort !== 6001 ? { port: a.tcpPort } : {}),
    status: a.away ? "away" : "online",
    ...(a.id !== undefined ? { id: a.id } : {})
  })

export const encodeBye = (username: string, id: string | undefined): string =>
  JSON.stringify({ bye: normalizeUsername(username), proto: PROTO, ...(id !== undefined ? { id } : {}) })
