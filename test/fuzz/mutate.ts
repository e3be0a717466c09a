/**
 * Mutators: on the JSON tree (type swaps, hostile and huge values, duplicate and polluting
 * keys, deep nesting) and on bytes (bit flips, truncation, ranges deleted, duplicated or
 * swapped, invalid UTF-8 and JSON-significant text inserted). Each returns a new value and
 * a short name, so that a failure says what was done to the input.
 */
import {
  hostileString,
  hugeString,
  isObj,
  type J,
  nested,
  pollution,
  randomJson,
  randomKey,
  randomScalar
} from "./gen.ts"
import type { Rng } from "./rng.ts"

/** Largest mutated input, in bytes: well over the frame cap, small enough to stay fast. */
export const MAX_MUTATED_BYTES = 140_000

// ---------------------------------------------------------------------------------------------
// Tree mutations

type Entries = ReadonlyArray<readonly [string, J]>

const typeOf = (j: J): string =>
  j === null ? "null" : Array.isArray(j) ? "array" : isObj(j) ? "object" : typeof j === "object" ? "raw" : typeof j

const otherType = (rng: Rng, j: J): J => {
  for (let i = 0; i < 8; i++) {
    const v = rng.chance(0.7) ? randomScalar(rng) : randomJson(rng, 2)
    if (typeOf(v) !== typeOf(j)) return v
  }
  return typeof j === "string" ? 1 : "1"
}

const insertAt = (s: string, rng: Rng, piece: string): string => {
  const i = rng.int(0, s.length)
  return s.slice(0, i) + piece + s.slice(i)
}

/** A string just under, at or just over a length limit (usernames: 32 characters; ids: 128). */
const boundaryString = (rng: Rng): string => {
  const n = rng.pick([0, 1, 31, 32, 33, 42, 43, 44, 127, 128, 129])
  const unit = rng.pick(["a", "é", "🎉", "İ", "~", "-"])
  return unit.repeat(n)
}

/** Replaces the value of one entry. */
const mapValue = (entries: Entries, rng: Rng, f: (v: J) => J): Entries => {
  if (entries.length === 0) return entries
  const i = rng.int(0, entries.length - 1)
  return entries.map((e, k) => (k === i ? [e[0], f(e[1])] as const : e))
}

const TREE_MUTATIONS: ReadonlyArray<readonly [number, string, (e: Entries, rng: Rng) => Entries]> = [
  [6, "type-swap", (e, rng) => mapValue(e, rng, (v) => otherType(rng, v))],
  [4, "hostile-string", (e, rng) => mapValue(e, rng, () => hostileString(rng))],
  [3, "control-char", (e, rng) =>
    mapValue(e, rng, (v) =>
      typeof v === "string"
        ? insertAt(v, rng, rng.pick(["\u0000", "\u0007", "\n", "\u001b[2J", "\u007f", "\u0085", "\u2028", "\t", " "]))
        : v)],
  [2, "edge-spaces", (e, rng) => mapValue(e, rng, (v) => (typeof v === "string" ? rng.pick([" ", "\t", "\u00a0"]) + v + " " : v))],
  [2, "lone-surrogate", (e, rng) => mapValue(e, rng, (v) => (typeof v === "string" ? insertAt(v, rng, rng.pick(["\ud800", "\udc00"])) : v))],
  [2, "huge-string", (e, rng) => mapValue(e, rng, () => hugeString(rng))],
  [3, "boundary-length", (e, rng) => mapValue(e, rng, () => boundaryString(rng))],
  [2, "deep-nesting", (e, rng) => mapValue(e, rng, (v) => nested(rng, rng.pick([2, 63, 64, 65, 200, 600]), rng.chance(0.5) ? v : null))],
  [3, "drop-field", (e, rng) => (e.length === 0 ? e : e.filter((_, k) => k !== rng.int(0, e.length - 1)))],
  [3, "add-field", (e, rng) => {
    const entry = [randomKey(rng), randomJson(rng, 2)] as const
    return rng.chance(0.5) ? [entry, ...e] : [...e, entry]
  }],
  [3, "duplicate-key", (e, rng) => {
    if (e.length === 0) return e
    const [k, v] = e[rng.int(0, e.length - 1)]!
    const dup = [k, rng.chance(0.5) ? otherType(rng, v) : v] as const
    return rng.chance(0.5) ? [dup, ...e] : [...e, dup]
  }],
  [2, "rename-key", (e, rng) => {
    if (e.length === 0) return e
    const i = rng.int(0, e.length - 1)
    const [k, v] = e[i]!
    const renamed = rng.pick([k.toUpperCase(), ` ${k}`, `${k} `, `${k}\u0000`, k.slice(1), k + k])
    return e.map((x, n) => (n === i ? [renamed, v] as const : x))
  }],
  [3, "pollute", (e, rng) => (rng.chance(0.5) ? [pollution(rng), ...e] : [...e, pollution(rng)])],
  [1, "empty", () => []]
]

/** Mutates the fields of a JSON object 1-3 times; other trees are replaced or wrapped. */
export const mutateTree = (rng: Rng, j: J): { readonly value: J; readonly ops: ReadonlyArray<string> } => {
  const ops: Array<string> = []
  if (!isObj(j)) return { value: rng.chance(0.5) ? randomJson(rng) : [j], ops: ["replace"] }
  let entries = j.obj
  const n = rng.int(1, 3)
  for (let i = 0; i < n; i++) {
    const [, name, f] = rng.weighted(TREE_MUTATIONS.map((m) => [m[0], m] as const))
    entries = f(entries, rng)
    ops.push(name)
  }
  let value: J = { obj: entries }
  if (rng.chance(0.05)) {
    value = rng.chance(0.5) ? [value] : { obj: [["frame", value]] }
    ops.push("wrap")
  }
  return { value, ops }
}

// ---------------------------------------------------------------------------------------------
// Byte mutations

const INTERESTING_BYTES = [
  0x00, 0x09, 0x0a, 0x0d, 0x1b, 0x20, 0x22, 0x2c, 0x3a, 0x5b, 0x5c, 0x5d, 0x7b, 0x7d, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc3, 0xe2,
  0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xfe, 0xff
]
/** Invalid or awkward UTF-8: overlong, surrogate, out of range, lone continuation, truncated, BOM. */
const UTF8_TRAPS: ReadonlyArray<ReadonlyArray<number>> = [
  [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xbf], [0xe2, 0x82], [0xf0, 0x9f, 0x8e], [0xc3],
  [0xef, 0xbb, 0xbf], [0xff, 0xfe], [0xfe, 0xff]
]
const TEXT_TRAPS = [
  "{", "}", "[", "]", "\"", "\\", "\\u", "\\ud800", "\\u0000", ",", ":", " ", "\n", "\r\n", "{}", "[]", "null", "\"\"",
  ",\"__proto__\":{\"polluted\":1}", ",\"constructor\":{\"prototype\":{\"polluted\":1}}", "}{", "\"}", "{\"a\":", "\u001b[2J",
  "1e999", "-", "0x10", "NaN", "true"
]
const enc = new TextEncoder()

const concat = (...parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

const BYTE_MUTATIONS: ReadonlyArray<readonly [number, string, (b: Uint8Array, rng: Rng) => Uint8Array]> = [
  [6, "bit-flip", (b, rng) => {
    if (b.length === 0) return b
    const out = new Uint8Array(b) // a copy (Buffer#slice would share memory)
    const flips = rng.int(1, 4)
    for (let i = 0; i < flips; i++) out[rng.int(0, out.length - 1)]! ^= 1 << rng.int(0, 7)
    return out
  }],
  [4, "set-byte", (b, rng) => {
    if (b.length === 0) return b
    const out = new Uint8Array(b) // a copy (Buffer#slice would share memory)
    out[rng.int(0, out.length - 1)] = rng.pick(INTERESTING_BYTES)
    return out
  }],
  [5, "truncate", (b, rng) => b.subarray(0, rng.int(0, Math.max(0, b.length - 1)))],
  [2, "drop-prefix", (b, rng) => b.subarray(rng.int(1, Math.max(1, b.length)))],
  [3, "delete-range", (b, rng) => {
    if (b.length < 2) return b
    const i = rng.int(0, b.length - 1)
    const j = Math.min(b.length, i + 1 + rng.skewed(32))
    return concat(b.subarray(0, i), b.subarray(j))
  }],
  [3, "duplicate-range", (b, rng) => {
    if (b.length === 0) return b
    const i = rng.int(0, b.length - 1)
    const j = Math.min(b.length, i + 1 + rng.skewed(64))
    return concat(b.subarray(0, j), b.subarray(i, j), b.subarray(j))
  }],
  [2, "swap-ranges", (b, rng) => {
    if (b.length < 4) return b
    const cut1 = rng.int(1, b.length - 2)
    const cut2 = rng.int(cut1 + 1, b.length - 1)
    return concat(b.subarray(cut2), b.subarray(cut1, cut2), b.subarray(0, cut1))
  }],
  [4, "invalid-utf8", (b, rng) => {
    const i = rng.int(0, b.length)
    return concat(b.subarray(0, i), Uint8Array.from(rng.pick(UTF8_TRAPS)), b.subarray(i))
  }],
  [4, "insert-text", (b, rng) => {
    const i = rng.int(0, b.length)
    return concat(b.subarray(0, i), enc.encode(rng.pick(TEXT_TRAPS)), b.subarray(i))
  }],
  [2, "insert-random", (b, rng) => {
    const i = rng.int(0, b.length)
    return concat(b.subarray(0, i), rng.bytes(1 + rng.skewed(64)), b.subarray(i))
  }],
  [1, "repeat", (b, rng) => (b.length * 4 > MAX_MUTATED_BYTES ? b : concat(...Array.from({ length: rng.int(2, 4) }, () => b)))]
]

/** Applies 1-`max` byte mutations. */
export const mutateBytes = (
  rng: Rng,
  bytes: Uint8Array,
  max = 3
): { readonly value: Uint8Array; readonly ops: ReadonlyArray<string> } => {
  let b = bytes
  const ops: Array<string> = []
  const n = rng.int(1, max)
  for (let i = 0; i < n; i++) {
    const [, name, f] = rng.weighted(BYTE_MUTATIONS.map((m) => [m[0], m] as const))
    b = f(b, rng)
    if (b.length > MAX_MUTATED_BYTES) b = b.subarray(0, MAX_MUTATED_BYTES)
    ops.push(name)
  }
  return { value: b, ops }
}

export { concat }
