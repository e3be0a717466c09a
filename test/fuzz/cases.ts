/**
 * The inputs of one fuzz case: a datagram for Discovery, or a plan for a chat connection
 * (classic/plain, random, or secure). Everything is drawn from the case's own Rng; parts
 * that depend on the responder's answers (the classic key, the Noise keys) are drawn from
 * a generator forked up front, so a case is the same input whatever the timing.
 */
import { classicEncrypt } from "../../src/domain/Classic.ts"
import { encodePlainText } from "../../src/domain/Frames.ts"
import {
  hostileString,
  type J,
  keyIdText,
  messageId,
  nested,
  obj,
  pollution,
  randomJson,
  toBytes,
  toText,
  validUsername
} from "./gen.ts"
import { concat, mutateBytes, mutateTree } from "./mutate.ts"
import { referenceInner } from "./oracle.ts"
import { Rng } from "./rng.ts"

const enc = new TextEncoder()

// ---------------------------------------------------------------------------------------------
// Datagrams

export interface DatagramCase {
  readonly bytes: Uint8Array
  readonly desc: string
}

const announcement = (rng: Rng, ownId: string | undefined): J => {
  const username = validUsername(rng)
  if (rng.chance(0.2)) return obj(["username", username]) // a classic peer
  return obj(
    ["username", username],
    ["proto", rng.chance(0.9) ? "p2pchat/1" : hostileString(rng, 10)],
    rng.chance(0.5) ? ["port", rng.pick([6001, 1, 65535, rng.int(1, 65535)])] : undefined,
    rng.chance(0.7) ? ["status", rng.pick(["online", "away"])] : undefined,
    rng.chance(0.8) ? ["id", ownId !== undefined && rng.chance(0.15) ? ownId : keyIdText(rng)] : undefined
  )
}

const bye = (rng: Rng): J =>
  obj(["bye", validUsername(rng)], ["proto", "p2pchat/1"], rng.chance(0.7) ? ["id", keyIdText(rng)] : undefined)

/** A datagram: valid, mutated (tree and/or bytes), random, oversized or deeply nested. */
export const datagramCase = (rng: Rng, ownId: string | undefined): DatagramCase => {
  const seed = () => (rng.chance(0.8) ? announcement(rng, ownId) : bye(rng))
  const indent = () => (rng.chance(0.1) ? 4 : 0)
  return rng.weighted<() => DatagramCase>([
    [10, () => ({ bytes: toBytes(seed(), indent()), desc: "valid" })],
    [3, () => ({ bytes: toBytes(announcement(new Rng(rng.u32()), ownId)), desc: "valid announcement" })],
    [35, () => {
      const m = mutateTree(rng, seed())
      return { bytes: toBytes(m.value, indent()), desc: `tree:${m.ops.join(",")}` }
    }],
    [22, () => {
      const m = mutateBytes(rng, toBytes(seed(), indent()))
      return { bytes: m.value, desc: `bytes:${m.ops.join(",")}` }
    }],
    [8, () => {
      const t = mutateTree(rng, seed())
      const m = mutateBytes(rng, toBytes(t.value))
      return { bytes: m.value, desc: `tree:${t.ops.join(",")}+bytes:${m.ops.join(",")}` }
    }],
    [7, () => ({ bytes: toBytes(randomJson(rng, 4)), desc: "random-json" })],
    [6, () => ({ bytes: rng.bytes(rng.skewed(1500)), desc: "random-bytes" })],
    [4, () => {
      const pad = "x".repeat(rng.pick([1000, 1025, 2000, 9000, 60_000]))
      return { bytes: toBytes(obj(["username", validUsername(rng)], ["pad", pad])), desc: "oversized" }
    }],
    [4, () => {
      const levels = rng.pick([10, 64, 65, 300, 500, 511])
      const where = rng.int(0, 2)
      const v = nested(rng, levels, "x")
      const j = where === 0 ? obj(["username", v]) : where === 1 ? obj(["username", validUsername(rng)], ["deep", v]) : v
      return { bytes: toBytes(j), desc: `deep:${levels}` }
    }],
    [3, () => {
      const j = obj(pollution(rng), ["username", validUsername(rng)], rng.chance(0.5) ? pollution(rng) : undefined)
      return { bytes: toBytes(j), desc: "pollution" }
    }]
  ])()
}

// ---------------------------------------------------------------------------------------------
// Classic and plain connections

export interface EncryptedSpec {
  readonly text: string
  readonly id: string | undefined
  readonly from: string | undefined
}

export interface ClassicPlan {
  readonly kind: "classic"
  readonly desc: string
  /** Sent first; may hold `key` frames, which the client waits to see answered. */
  readonly phaseA: Uint8Array
  /** Sent once the key answers arrived: encrypted frames under the agreed key (then maybe mutated). */
  readonly phaseB: (key24: Uint8Array | undefined) => Uint8Array
  /** The frames of phase A, when it was not mutated (for the splitter's round trip). */
  readonly pristine: ReadonlyArray<string> | undefined
}

const plainText = (rng: Rng, tag: string): string =>
  rng.chance(0.6) ? `${tag} ${validUsername(rng)}` : `${tag} ${hostileString(rng, 60)}`

const plainFrame = (rng: Rng, tag: string): J => {
  const text = plainText(rng, tag)
  // Some classic variants send the text itself; base64 is the rule.
  const value = rng.chance(0.8) ? encodePlainText(text) : rng.chance(0.5) ? text : hostileString(rng, 30)
  const p2p = rng.chance(0.7)
  return obj(
    ["unencrypted_message", value],
    p2p ? ["id", messageId(rng, tag)] : undefined,
    p2p && rng.chance(0.8) ? ["from", validUsername(rng)] : undefined
  )
}

const keyFrame = (rng: Rng): J =>
  obj(["key", rng.weighted<number>([[8, rng.int(0, 18)], [1, rng.int(19, 100_000)], [1, -rng.int(1, 1000)], [1, 2 ** 53 - 1]])])

const serialize = (rng: Rng, frames: ReadonlyArray<J>): { bytes: Uint8Array; texts: Array<string> } => {
  const pretty = rng.chance(0.25)
  const texts = frames.map((f) => toText(f, pretty || rng.chance(0.1) ? 4 : 0))
  const sep = pretty ? rng.pick(["", "", "\n", " "]) : rng.pick(["\n", "\n", "", " \r\n"])
  return { bytes: enc.encode(texts.map((t) => t + sep).join("")), texts }
}

/** Applies the plan's mutation to a list of frames: one frame's tree, or the bytes, or nothing. */
export const mutateFrames = (
  rng: Rng,
  frames: ReadonlyArray<J>,
  how: "none" | "tree" | "bytes" | "both"
): { bytes: Uint8Array; texts: Array<string> | undefined; ops: string } => {
  let list = frames
  const ops: Array<string> = []
  if ((how === "tree" || how === "both") && list.length > 0) {
    const i = rng.int(0, list.length - 1)
    const m = mutateTree(rng, list[i]!)
    list = list.map((f, k) => (k === i ? m.value : f))
    ops.push(`tree[${i}]:${m.ops.join(",")}`)
  }
  const s = serialize(rng, list)
  if (how === "bytes" || how === "both") {
    const m = mutateBytes(rng, s.bytes)
    ops.push(`bytes:${m.ops.join(",")}`)
    return { bytes: m.value, texts: undefined, ops: ops.join(" ") }
  }
  return { bytes: s.bytes, texts: how === "none" ? s.texts : undefined, ops: ops.join(" ") || "none" }
}

const HOW: ReadonlyArray<readonly [number, "none" | "tree" | "bytes" | "both"]> = [[3, "none"], [4, "tree"], [4, "bytes"], [1, "both"]]

export const classicPlan = (rng: Rng, tag: string): ClassicPlan => {
  // Phase A: plain frames and (usually) a key frame; phase B: encrypted frames.
  const withKey = rng.chance(0.6)
  const framesA: Array<J> = Array.from({ length: rng.skewed(4) }, () => plainFrame(rng, tag))
  if (withKey) framesA.splice(rng.int(0, framesA.length), 0, keyFrame(rng))
  if (rng.chance(0.05)) framesA.push(keyFrame(rng)) // a second key replaces the first
  if (framesA.length === 0) framesA.push(plainFrame(rng, tag))
  const specsB: Array<EncryptedSpec> = withKey || rng.chance(0.1)
    ? Array.from({ length: rng.int(1, 3) }, () => {
      const p2p = rng.chance(0.7)
      return {
        text: plainText(rng, tag),
        id: p2p ? messageId(rng, tag) : undefined,
        from: p2p && rng.chance(0.8) ? validUsername(rng) : undefined
      }
    })
    : []
  const howA = rng.weighted(HOW)
  const howB = specsB.length === 0 ? "none" : rng.weighted(HOW)
  const wrongKey = rng.chance(0.05)
  const a = mutateFrames(rng, framesA, howA)
  const laterSeed = rng.u32()
  let descB = ""
  const phaseB = (key24: Uint8Array | undefined): Uint8Array => {
    if (specsB.length === 0) return new Uint8Array(0)
    const r = new Rng(laterSeed)
    const key = key24 === undefined || wrongKey ? Buffer.from(r.bytes(24)) : key24
    const frames = specsB.map((s) =>
      obj(
        ["encrypted_message", classicEncrypt(key, s.text)],
        s.id !== undefined ? ["id", s.id] : undefined,
        s.from !== undefined ? ["from", s.from] : undefined
      )
    )
    const m = mutateFrames(r, frames, howB)
    descB = m.ops
    return m.bytes
  }
  return {
    kind: "classic",
    get desc() {
      return `classic A(${framesA.length}):${a.ops} B(${specsB.length}${wrongKey ? ",wrong-key" : ""}):${descB || howB}`
    },
    phaseA: a.bytes,
    phaseB,
    pristine: a.texts
  }
}

/** Random bytes, random JSON values, deep nesting around the 64-level cap, frames around the 64 KiB cap. */
export const randomStreamPlan = (rng: Rng, tag: string): ClassicPlan => {
  const kind = rng.int(0, 3)
  let bytes: Uint8Array
  let desc: string
  if (kind === 0) {
    bytes = rng.bytes(rng.skewed(3000))
    desc = "random-bytes"
  } else if (kind === 1) {
    bytes = enc.encode(Array.from({ length: rng.int(1, 4) }, () => toText(randomJson(rng, 4))).join(rng.pick(["", "\n"])))
    desc = "random-json"
  } else if (kind === 2) {
    const levels = rng.pick([63, 64, 65, 100, 5000])
    const frame = obj(["unencrypted_message", encodePlainText(`${tag} deep`)], ["id", messageId(rng, tag)], ["deep", nested(rng, levels - 1)])
    bytes = toBytes(frame)
    desc = `deep:${levels}`
  } else {
    const size = rng.pick([65_535, 65_536, 65_537, 70_000, 100_000])
    const frame = toText(obj(["unencrypted_message", "x"], ["id", messageId(rng, tag)], ["pad", ""]))
    const filler = "a".repeat(Math.max(0, size - frame.length))
    bytes = enc.encode(frame.replace("\"pad\":\"\"", `"pad":"${filler}"`) + "\n")
    desc = `frame-of-${bytes.length - 1}-bytes`
  }
  return { kind: "classic", desc, phaseA: bytes, phaseB: () => new Uint8Array(0), pristine: undefined }
}

/** Secure-looking frames (`hs`, `ct` with random bytes), mutated: for the pure decoders. */
export const secureLikeStream = (rng: Rng): { readonly bytes: Uint8Array; readonly desc: string; readonly pristine: ReadonlyArray<string> | undefined } => {
  const b64 = (n: number) => Buffer.from(rng.bytes(n)).toString(rng.chance(0.9) ? "base64" : "base64url")
  const frames: Array<J> = [obj(["proto", rng.chance(0.9) ? "p2pchat/1" : hostileString(rng, 12)], ["hs", b64(32)])]
  const n = rng.skewed(5)
  for (let i = 0; i < n; i++) frames.push(rng.chance(0.2) ? obj(["hs", b64(rng.pick([0, 48, 64, 96]))]) : obj(["ct", b64(rng.int(0, 300))]))
  const m = mutateFrames(rng, frames, rng.weighted(HOW))
  return { bytes: m.bytes, desc: `secure-like:${m.ops}`, pristine: m.texts }
}

// ---------------------------------------------------------------------------------------------
// Secure sessions

export type InnerSpec =
  | { readonly kind: "msg"; readonly id: string; readonly text: string; readonly plaintext: Uint8Array }
  | { readonly kind: "bad"; readonly plaintext: Uint8Array; readonly desc: string }
  | { readonly kind: "other"; readonly plaintext: Uint8Array; readonly desc: string }

export interface NoisePlan {
  readonly kind: "noise"
  readonly desc: string
  /** The username sent in message 3 (unique per case, so trust on first use never refuses it). */
  readonly username: string
  /** Message 1 is mutated: the handshake cannot go on; the client hangs up after the answer. */
  readonly mutateM1: ((m1Frame: Uint8Array) => Uint8Array) | undefined
  /** Message 3: as made, with its frame bytes mutated, or carrying a payload that is not a username. */
  readonly m3: "pristine" | "mutated" | "bad-payload"
  readonly badPayload: Uint8Array
  readonly mutateM3: (m3Frame: Uint8Array) => Uint8Array
  readonly inners: ReadonlyArray<InnerSpec>
  /** Applied to the transport frames (after encryption), or undefined for none. */
  readonly mutateTransport: ((frames: ReadonlyArray<J>, rng: Rng) => Uint8Array) | undefined
  readonly laterSeed: number
}

const innerPlaintext = (j: J): Uint8Array => enc.encode(toText(j))
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** What the responder must make of a decrypted inner object (by the reference rules). */
export const classifyInner = (plaintext: Uint8Array, desc: string): InnerSpec => {
  let text: string
  try {
    text = strictUtf8.decode(plaintext)
  } catch {
    return { kind: "bad", plaintext, desc }
  }
  const v = referenceInner(text)
  if (!v.ok) return { kind: "bad", plaintext, desc }
  if (v.tag === "msg") return { kind: "msg", id: v.value.id as string, text: v.value.text as string, plaintext }
  return { kind: "other", plaintext, desc }
}

const innerSpec = (rng: Rng, tag: string, k: number): InnerSpec => {
  const id = messageId(rng, tag)
  const text = `${tag} #${k} ${rng.chance(0.7) ? validUsername(rng) : hostileString(rng, 40)}`
  const msg = obj(["type", "msg"], ["id", id], ["text", text], ["sentAt", new Date(1_700_000_000_000 + k).toISOString()])
  return rng.weighted<() => InnerSpec>([
    [10, () => classifyInner(innerPlaintext(msg), "msg")],
    [4, () => {
      const m = mutateTree(rng, msg)
      return classifyInner(innerPlaintext(m.value), `inner-tree:${m.ops.join(",")}`)
    }],
    [1, () => classifyInner(mutateBytes(rng, innerPlaintext(msg)).value, "inner-bytes")],
    [1, () => classifyInner(innerPlaintext(obj(["type", "ack"], ["id", id])), "inner-ack")],
    [1, () => classifyInner(innerPlaintext(obj(pollution(rng), ["type", "msg"], ["id", id], ["text", text], ["sentAt", "x"])), "inner-pollution")]
  ])()
}

export const noisePlan = (rng: Rng, tag: string, index: number): NoisePlan => {
  const username = `nz${index.toString(36)}-${[...validUsername(rng)].slice(0, 8).join("").trim() || "x"}`
  const flow = rng.weighted<"m1" | "m3" | "payload" | "transport">([[2, "m1"], [2, "m3"], [1, "payload"], [7, "transport"]])
  const descs: Array<string> = [flow]
  const mutateM1 = flow === "m1"
    ? (frame: Uint8Array) => {
      const r = new Rng(index ^ 0x51ed)
      const m = r.chance(0.5) ? mutateBytes(r, frame) : mutateBytes(r, frame, 1)
      descs.push(m.ops.join(","))
      return m.value
    }
    : undefined
  const mutateM3 = (frame: Uint8Array) => {
    const r = new Rng(index ^ 0x3a3a)
    const m = mutateBytes(r, frame)
    descs.push(`m3:${m.ops.join(",")}`)
    return m.value
  }
  const badPayload = rng.pick<Uint8Array>([
    enc.encode("hello"),
    enc.encode("{\"username\":\"\"}"),
    enc.encode("{\"name\":\"bob\"}"),
    enc.encode("{\"username\":\"a\\u0000b\"}"),
    enc.encode("{\"username\":5}"),
    enc.encode("{\"username\":\" padded \"}"),
    enc.encode(`{"username":"${"x".repeat(33)}"}`),
    enc.encode("[\"username\"]"),
    Uint8Array.from([0xff, 0xfe, 0x7b, 0x7d]),
    new Uint8Array(0)
  ])
  const inners = flow === "transport" ? Array.from({ length: rng.int(1, 4) }, (_, k) => innerSpec(rng, tag, k)) : []
  const transportHow = rng.weighted<"none" | "tree" | "bytes" | "classic">([[4, "none"], [3, "tree"], [4, "bytes"], [1, "classic"]])
  descs.push(`transport:${transportHow}`)
  const mutateTransport = transportHow === "none"
    ? undefined
    : (frames: ReadonlyArray<J>, r: Rng): Uint8Array => {
      if (transportHow === "classic") {
        const extra = r.pick<J>([obj(["unencrypted_message", "aGk="]), obj(["key", 3]), obj(["hs", "AAAA"]), obj(["ack", "x"])])
        return enc.encode([...frames, extra].map((f) => toText(f) + "\n").join(""))
      }
      if (transportHow === "tree" && frames.length > 0) {
        const i = r.int(0, frames.length - 1)
        const m = mutateTree(r, frames[i]!)
        descs.push(`ct[${i}]:${m.ops.join(",")}`)
        return enc.encode(frames.map((f, k) => toText(k === i ? m.value : f) + "\n").join(""))
      }
      const m = mutateBytes(r, enc.encode(frames.map((f) => toText(f) + "\n").join("")))
      descs.push(`ct-bytes:${m.ops.join(",")}`)
      return m.value
    }
  return {
    kind: "noise",
    get desc() {
      return `noise ${descs.join(" ")} inners:${inners.map((i) => (i.kind === "msg" ? "msg" : `${i.kind}(${i.desc})`)).join(",")}`
    },
    username,
    mutateM1,
    m3: flow === "m3" ? "mutated" : flow === "payload" ? "bad-payload" : "pristine",
    badPayload,
    mutateM3,
    inners,
    mutateTransport,
    laterSeed: rng.u32()
  }
}

export { concat }
