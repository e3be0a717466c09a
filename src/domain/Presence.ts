/**
 * Presence datagrams (PROTOCOL.md section 1): the announcement, in its classic and
 * p2pchat shapes, and the bye. Decoded at the edge; inside, the types are trusted.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import { clean } from "./Text.ts"

export const PROTO = "p2pchat/1"
export const MAX_DATAGRAM_BYTES = 1024
export const USERNAME_MAX = 32

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u

/** Node 20 has these; TypeScript's ES2022 library does not declare them yet. */
export type WellFormed = string & { isWellFormed(): boolean; toWellFormed(): string }

/** Why a username is not acceptable, or undefined when it is. */
export const usernameProblem = (name: string): string | undefined => {
  const length = [...name].length
  if (length < 1) return "a username needs at least 1 character"
  if (length > USERNAME_MAX) return `a username has at most ${USERNAME_MAX} characters`
  if (CONTROL.test(name)) return "a username cannot contain control characters"
  if (!(name as WellFormed).isWellFormed()) return "a username must be valid Unicode (no lone surrogates)"
  if (name.trim() !== name) return "a username cannot start or end with spaces"
  return undefined
}

export const Username = Schema.String.check(Schema.makeFilter((s: string) => usernameProblem(s) ?? true))

/** Usernames are compared case-insensitively (classic peers lower-case them). */
export const usernameKey = (name: string): string => name.toLowerCase()

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
    username: a.username,
    proto: PROTO,
    ...(a.tcpPort !== 6001 ? { port: a.tcpPort } : {}),
    status: a.away ? "away" : "online",
    ...(a.id !== undefined ? { id: a.id } : {})
  })

export const encodeBye = (username: string, id: string | undefined): string =>
  JSON.stringify({ bye: username, proto: PROTO, ...(id !== undefined ? { id } : {}) })
