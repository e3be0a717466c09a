/**
 * Generators of hostile and valid values for the fuzz harness. JSON is built as a small
 * tree (`J`) and serialised by hand, so that a case can hold what a JS object cannot:
 * duplicate keys, `__proto__` as an own key, numbers like `1e400` or `-0`, raw tokens.
 */
import type { Rng } from "./rng.ts"

// ---------------------------------------------------------------------------------------------
// A JSON tree that can say anything the wire can

export type J =
  | null
  | boolean
  | number
  | string
  | ReadonlyArray<J>
  | { readonly obj: ReadonlyArray<readonly [string, J]> }
  | { readonly raw: string }

export const obj = (...entries: ReadonlyArray<readonly [string, J] | undefined>): J => ({
  obj: entries.filter((e): e is readonly [string, J] => e !== undefined)
})
export const isObj = (j: J): j is { readonly obj: ReadonlyArray<readonly [string, J]> } =>
  typeof j === "object" && j !== null && !Array.isArray(j) && "obj" in j
const isRaw = (j: J): j is { readonly raw: string } => typeof j === "object" && j !== null && !Array.isArray(j) && "raw" in j

/** Serialises a tree: compact, or indented like Python's json.dumps(indent=4). */
export const toText = (j: J, indent = 0, level = 0): string => {
  const nl = indent > 0 ? "\n" + " ".repeat(indent * (level + 1)) : ""
  const end = indent > 0 ? "\n" + " ".repeat(indent * level) : ""
  const sep = indent > 0 ? ": " : ":"
  if (j === null || typeof j === "boolean") return String(j)
  if (typeof j === "number") return Number.isFinite(j) ? (Object.is(j, -0) ? "-0" : JSON.stringify(j)) : "null"
  if (typeof j === "string") return JSON.stringify(j)
  if (Array.isArray(j)) {
    if (j.length === 0) return "[]"
    return "[" + j.map((x) => nl + toText(x, indent, level + 1)).join(",") + end + "]"
  }
  if (isRaw(j)) return j.raw
  const entries = (j as { readonly obj: ReadonlyArray<readonly [string, J]> }).obj
  if (entries.length === 0) return "{}"
  return "{" + entries.map(([k, v]) => nl + JSON.stringify(k) + sep + toText(v, indent, level + 1)).join(",") + end + "}"
}

const utf8 = new TextEncoder()
export const toBytes = (j: J, indent = 0): Uint8Array => utf8.encode(toText(j, indent))

// ---------------------------------------------------------------------------------------------
// Strings

const ASCII = [..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."]
/** Characters a username may hold (no control characters), some that change on lower-casing. */
const NAME_CHARS = [...ASCII, "é", "ß", "İ", "Ω", "ж", "✓", "🎉", "語", "ǅ", "ﬀ", "\u0301", " ", "'", "\"", "\\", "{", "}"]

const CONTROL = [
  "\u0000", "\u0001", "\u0007", "\b", "\t", "\n", "\u000b", "\f", "\r", "\u001b", "\u001f", "\u007f", "\u0080", "\u0085",
  "\u009b", "\u009f", "\u2028", "\u2029"
]
const HOSTILE_PIECES = [
  ...CONTROL,
  "\u001b[2J", "\u001b]0;pwned\u0007", "\u001b[31m", "\u200b", "\u202e", "\ufeff", "\ufffd", "\ud800", "\udfff", "\udbff\udfff",
  "\"", "\\", "{", "}", "[", "]", ":", ",", "/", " ", "\u00a0", "\u3000",
  "__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "valueOf",
  "'; DROP TABLE messages; --", "%s%n", "${x}", "..", "null", "undefined", "NaN",
  "unknown (127.0.0.1)", "p2pchat/1", "=", "==", "+", "-", "_", "AAAA", "////", "%00", "é", "🎉", "İ"
]

export const validUsername = (rng: Rng): string => {
  if (rng.chance(0.05)) return rng.pick(["x", "🎉", "İ", "é"]).repeat(32) // at the limit, in code points
  const n = rng.int(1, rng.chance(0.2) ? 32 : 12)
  let s = ""
  for (let i = 0; i < n; i++) s += rng.pick(NAME_CHARS)
  // A username may not start or end with spaces; combining marks alone are fine.
  s = s.trim()
  const cps = [...s]
  if (cps.length === 0) return "u" + rng.int(0, 9999)
  return cps.slice(0, 32).join("")
}

export const hostileString = (rng: Rng, maxLen = 40): string => {
  const n = rng.skewed(maxLen)
  let s = ""
  for (let i = 0; i < n && s.length < maxLen * 4; i++) {
    s += rng.chance(0.5) ? rng.pick(ASCII) : rng.chance(0.7) ? rng.pick(HOSTILE_PIECES) : String.fromCharCode(rng.int(0, 0xffff))
  }
  return s
}

/** Something around the size limits: just under, at, just over, far over. */
export const hugeString = (rng: Rng): string => {
  const n = rng.pick([33, 127, 128, 129, 1000, 1024, 4096, 65_536, 70_000])
  const unit = rng.pick(["a", "é", "🎉", "\\", "\"", "A", "\u0000"])
  return unit.repeat(Math.max(1, Math.floor(n / unit.length)))
}

export const keyIdText = (rng: Rng): string => Buffer.from(rng.bytes(32)).toString("base64url")

export const messageId = (rng: Rng, tag: string): string => {
  const id = `${tag}-${rng.u32().toString(16)}-${rng.u32().toString(16)}`
  // Sometimes exactly at the 128-character limit (still unique: the tag comes first).
  return rng.chance(0.05) ? (id + "~".repeat(128)).slice(0, 128) : id
}

// ---------------------------------------------------------------------------------------------
// Random JSON

const FIELD_NAMES = [
  "username", "proto", "port", "status", "id", "bye", "ts", "sig", "unencrypted_message", "encrypted_message", "key", "ack", "hs",
  "ct", "from", "type", "text", "sentAt"
]
const HOSTILE_KEYS = ["__proto__", "constructor", "prototype", "toString", "hasOwnProperty", "", " ", "\u0000", "username\u0000"]

const NUMBERS: ReadonlyArray<J> = [
  0, -0, 1, -1, 5, 18, 19, 6000, 6001, 65535, 65536, 1.5, -2.5, 2 ** 31, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 1e21, 1e-7,
  Number.MAX_VALUE, { raw: "1e400" }, { raw: "-1e400" }, { raw: "1E2" }, { raw: "0.0" }, { raw: "-0.0" },
  { raw: "123456789012345678901234567890" }, { raw: "1e-400" }
]

export const randomKey = (rng: Rng): string =>
  rng.weighted<() => string>([
    [4, () => rng.pick(FIELD_NAMES)],
    [2, () => rng.pick(HOSTILE_KEYS)],
    [2, () => hostileString(rng, 12)]
  ])()

export const randomScalar = (rng: Rng): J =>
  rng.weighted<() => J>([
    [1, () => null],
    [1, () => rng.chance(0.5)],
    [3, () => rng.pick(NUMBERS)],
    [1, () => rng.int(-1000, 100000)],
    [4, () => hostileString(rng)],
    [1, () => keyIdText(rng)],
    [1, () => Buffer.from(rng.bytes(64)).toString("base64url")]
  ])()

export const randomJson = (rng: Rng, depth = 3): J => {
  if (depth <= 0 || rng.chance(0.45)) return randomScalar(rng)
  if (rng.chance(0.35)) {
    const n = rng.skewed(6)
    return Array.from({ length: n }, () => randomJson(rng, depth - 1))
  }
  const n = rng.skewed(7)
  return { obj: Array.from({ length: n }, () => [randomKey(rng), randomJson(rng, depth - 1)] as const) }
}

/** `levels` of arrays/objects around `inner`, as raw text (deep trees would overflow a recursive serialiser). */
export const nested = (rng: Rng, levels: number, inner: J = null): J => {
  const kind = rng.int(0, 2)
  const open: Array<string> = []
  const close: Array<string> = []
  for (let i = 0; i < levels; i++) {
    const array = kind === 0 || (kind === 2 && i % 2 === 0)
    open.push(array ? "[" : "{\"a\":")
    close.push(array ? "]" : "}")
  }
  return { raw: open.join("") + toText(inner) + close.reverse().join("") }
}

/** Prototype-pollution payloads: an own `__proto__` or `constructor.prototype` key. */
export const pollution = (rng: Rng): readonly [string, J] =>
  rng.pick([
    ["__proto__", obj(["polluted", true], ["username", "evil"])],
    ["__proto__", obj(["__proto__", obj(["polluted", 1])])],
    ["constructor", obj(["prototype", obj(["polluted", "yes"])])],
    ["__proto__", null],
    ["__proto__", "polluted"],
    ["prototype", obj(["polluted", 2])]
  ] as const)
