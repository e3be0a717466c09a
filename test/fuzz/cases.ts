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
  isObj,
  type J,
  keyIdText,
  messageId,
  nested,
  obj,
  pollution,
  randomJson,
  randomScalar,
  toBytes,
  toText,
  validUsername
} from "./gen.ts"
import { type Identity, malleated, nameVariant, spareBitsVariant, type World } from "./identities.ts"
import { concat, mutateBytes, mutateTree } from "./mutate.ts"
import { presenceSignedText, referenceInner } from "./oracle.ts"
import { Rng } from "./rng.ts"

const enc = new TextEncoder()

// ---------------------------------------------------------------------------------------------
// Datagrams

/** One datagram of a case: its bytes, and the source (an index into the run's sender sockets) it comes from. */
export interface Datagram {
  readonly bytes: Uint8Array
  readonly from: number
  /**
   * Whether its signature is good, as the case made it (undefined when the case cannot
   * say: unsigned, mutated, refused before any signature matters). The oracle must agree.
   */
  readonly sigOk?: boolean | undefined
}

export interface DatagramCase {
  /** Sent in this order (most cases have one). */
  readonly datagrams: ReadonlyArray<Datagram>
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

// ---------------------------------------------------------------------------------------------
// Signed presence

/** What a signed datagram says; `signedAs` overrides what the signature covers (a forgery). */
interface Presence {
  readonly tag: "Announcement" | "Bye"
  readonly username: string
  readonly port?: number | undefined
  readonly status?: "online" | "away" | undefined
  readonly proto?: string | undefined
  readonly id: string
  readonly ts: number
}

/** The values a signature covers, the username in NFC (as a receiver decodes it). */
const covered = (p: Presence): Record<string, unknown> =>
  p.tag === "Announcement"
    ? { username: p.username.normalize("NFC"), port: p.port, status: p.status, id: p.id, ts: p.ts }
    : { bye: p.username.normalize("NFC"), id: p.id, ts: p.ts }

const signWith = (identity: Identity, p: Presence): Uint8Array => identity.sign(enc.encode(presenceSignedText(p.tag, covered(p))))
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64url")

/** A datagram's JSON: its fields in the usual order (or shuffled), `sig` last unless shuffled. */
const presenceJson = (rng: Rng, p: Presence, sig: string | undefined, extra: ReadonlyArray<readonly [string, J]> = []): J => {
  const fields: Array<readonly [string, J]> = p.tag === "Announcement"
    ? [
      ["username", p.username],
      ...(p.proto !== undefined ? [["proto", p.proto] as const] : []),
      ...(p.port !== undefined ? [["port", p.port] as const] : []),
      ...(p.status !== undefined ? [["status", p.status] as const] : []),
      ["id", p.id],
      ["ts", p.ts]
    ]
    : [["bye", p.username], ...(p.proto !== undefined ? [["proto", p.proto] as const] : []), ["id", p.id], ["ts", p.ts]]
  if (sig !== undefined) fields.push(["sig", sig])
  fields.push(...extra)
  if (rng.chance(0.1)) {
    for (let i = fields.length - 1; i > 0; i--) {
      const j = rng.int(0, i)
      const t = fields[i]!
      fields[i] = fields[j]!
      fields[j] = t
    }
  }
  return { obj: fields }
}

/** A source: the identity's usual one mostly, another sometimes (a move, or an impostor). */
const sourceOf = (rng: Rng, world: World, identity: Identity | undefined, stay = 0.8): number =>
  identity !== undefined && rng.chance(stay) ? identity.home : rng.int(0, world.sources - 1)

const anySource = (rng: Rng, world: World): number => (rng.chance(0.6) ? 0 : rng.int(0, world.sources - 1))

/** What an honest identity announces: one of its names (maybe spelled another way), its id, a stamp. */
const presenceOf = (rng: Rng, identity: Identity, ts: number, tag: Presence["tag"] = "Announcement", name?: string): Presence => {
  const own = name ?? rng.pick(identity.names)
  const username = rng.chance(0.15) ? nameVariant(rng, own) : own
  return {
    tag,
    username,
    port: tag === "Bye" ? undefined : rng.weighted<number | undefined>([[4, undefined], [1, 6001], [3, rng.int(1, 65535)], [1, 1], [1, 65535]]),
    status: tag === "Bye" ? undefined : rng.weighted<"online" | "away" | undefined>([[3, undefined], [4, "online"], [2, "away"]]),
    proto: rng.weighted<string | undefined>([[12, "p2pchat/1"], [1, undefined], [1, "p2pchat/2"], [1, hostileString(rng, 8)]]),
    id: identity.id,
    ts
  }
}

/**
 * Signed presence among the run's identities: fresh, stale and copied stamps; good
 * signatures and forged ones (random, another key's, another datagram's, an announcement's
 * on a bye, s + L, the forgers'); fields changed after signing (covered or not); unsigned
 * claims and byes on signed names; malformed signing fields; mutations of signed datagrams.
 */
const signedCase = (rng: Rng, world: World, index: number): DatagramCase => {
  const stamp = (k = 0) => world.stampBase + index * 8 + k
  const staleStamp = () =>
    rng.weighted<number>([[6, world.stampBase + rng.int(0, Math.max(0, index - 1)) * 8 + rng.int(0, 7)], [1, 1], [1, world.stampBase - 1]])
  const honest = () => rng.pick(world.honest.filter((h) => h !== world.burner || rng.chance(0.3)))
  const one = (j: J, from: number, sigOk: boolean | undefined, desc: string): DatagramCase => ({
    datagrams: [{ bytes: toBytes(j, rng.chance(0.05) ? 4 : 0), from, sigOk }],
    desc
  })
  const signedJson = (identity: Identity, p: Presence, extra?: ReadonlyArray<readonly [string, J]>) =>
    presenceJson(rng, p, b64(signWith(identity, p)), extra)

  return rng.weighted<() => DatagramCase>([
    [20, () => {
      const h = honest()
      const p = presenceOf(rng, h, stamp())
      return one(signedJson(h, p), sourceOf(rng, world, h), true, `signed ${h.label} fresh`)
    }],
    [5, () => {
      // Mostly for its own names; sometimes for an unsigned peer's name it may have taken.
      const h = honest()
      const p = presenceOf(rng, h, stamp(), "Bye", rng.chance(0.3) ? rng.pick(world.plain).name : undefined)
      return one(signedJson(h, p), sourceOf(rng, world, h, 0.5), true, `signed ${h.label} bye`)
    }],
    [6, () => {
      const h = honest()
      const p = presenceOf(rng, h, staleStamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      return one(signedJson(h, p), sourceOf(rng, world, h), true, `signed ${h.label} stale ${p.tag}`)
    }],
    [6, () => {
      // A copy of a good datagram, sent again (from elsewhere, mostly): the stamp is no longer fresh.
      const h = honest()
      const p = presenceOf(rng, h, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      const bytes = toBytes(signedJson(h, p))
      const from = sourceOf(rng, world, h)
      const again = rng.chance(0.8) ? (from + rng.int(1, world.sources - 1)) % world.sources : from
      return { datagrams: [{ bytes, from, sigOk: true }, { bytes, from: again, sigOk: true }], desc: `signed ${h.label} then its copy` }
    }],
    [10, () => {
      // An unsigned claim on a signed peer's name: its id without a signature, another id, none.
      const h = honest()
      const name = rng.chance(0.3) ? nameVariant(rng, rng.pick(h.names)) : rng.pick(h.names)
      const id = rng.weighted<string | undefined>([[4, h.id], [3, keyIdText(rng)], [2, undefined], [1, rng.pick(world.honest).id]])
      const claim = obj(
        ["username", name],
        ["proto", "p2pchat/1"],
        rng.chance(0.5) ? ["port", rng.int(1, 65535)] : undefined,
        rng.chance(0.5) ? ["status", rng.pick(["online", "away"])] : undefined,
        id !== undefined ? ["id", id] : undefined,
        rng.chance(0.3) ? ["ts", stamp(1)] : undefined
      )
      const datagrams: Array<Datagram> = []
      if (rng.chance(0.4)) datagrams.push({ bytes: toBytes(signedJson(h, presenceOf(rng, h, stamp(), "Announcement", name))), from: h.home, sigOk: true })
      datagrams.push({ bytes: toBytes(claim), from: sourceOf(rng, world, h, 0.2) })
      return { datagrams, desc: `unsigned claim on ${h.label}'s name (${id === h.id ? "its id" : id === undefined ? "classic" : "another id"})` }
    }],
    [5, () => {
      const h = honest()
      const id = rng.weighted<string | undefined>([[5, h.id], [1, keyIdText(rng)], [1, undefined]])
      const j = obj(["bye", rng.pick(h.names)], ["proto", "p2pchat/1"], id !== undefined ? ["id", id] : undefined, rng.chance(0.3) ? ["ts", stamp()] : undefined)
      return one(j, sourceOf(rng, world, h, 0.4), undefined, `unsigned bye for ${h.label}`)
    }],
    [10, () => {
      const h = honest()
      const p = presenceOf(rng, h, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      const other = rng.pick(world.honest.filter((x) => x !== h))
      const [how, sig] = rng.weighted<() => readonly [string, Uint8Array]>([
        [3, () => ["random", rng.bytes(64)]],
        [1, () => ["zero", new Uint8Array(64)]],
        [3, () => ["another key's", signWith(other, p)]],
        [3, () => {
          // A bye's signature covers neither port nor status.
          const q: Presence = rng.pick<Presence>([
            { ...p, ts: p.ts - 1 },
            { ...p, username: rng.pick(world.honest.flatMap((x) => x.names).filter((n) => registryName(n) !== registryName(p.username))) },
            { ...p, id: other.id },
            ...(p.tag === "Announcement"
              ? [{ ...p, port: (p.port ?? 6001) === 6001 ? 6002 : 6001 }, { ...p, status: p.status === "away" ? "online" as const : "away" as const }]
              : [])
          ])
          return ["another datagram's", signWith(h, q)]
        }],
        [2, () => ["the other kind's", signWith(h, { ...p, tag: p.tag === "Bye" ? "Announcement" : "Bye" })]],
        [2, () => ["s + L", malleated(signWith(h, p))]]
      ])()
      return one(presenceJson(rng, p, b64(sig)), sourceOf(rng, world, h, 0.5), false, `forged (${how} signature) as ${h.label}`)
    }],
    [8, () => {
      // The forgers sign their own datagrams, under their own ids, often with an honest name.
      const f = rng.pick(world.forgers)
      const p = presenceOf(rng, f, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      return one(signedJson(f, p), sourceOf(rng, world, f, 0.5), false, `forger ${f.label}`)
    }],
    [8, () => {
      // Changed after signing: what the signature covers (refused), or what it does not (fine).
      const h = honest()
      const p = presenceOf(rng, h, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      const sig = b64(signWith(h, p))
      const nfd = p.username.normalize("NFD")
      const [how, j, ok] = rng.weighted<() => readonly [string, J, boolean]>([
        [2, () => ["ts + 1", presenceJson(rng, { ...p, ts: p.ts + 1 }, sig), false]],
        [2, () => {
          const port = (p.port ?? 6001) + (rng.chance(0.5) ? 1 : -1)
          return p.tag === "Bye" || port < 1 || port > 65535 ? ["ts - 1", presenceJson(rng, { ...p, ts: p.ts - 1 }, sig), false] : ["port", presenceJson(rng, { ...p, port }, sig), false]
        }],
        [1, () => ["status", presenceJson(rng, { ...p, status: p.status === "away" ? "online" : "away" }, sig), p.tag === "Bye"]],
        [2, () => {
          const upper = p.username.toUpperCase()
          return ["name's case", presenceJson(rng, { ...p, username: upper }, sig), upper.normalize("NFC") === p.username.normalize("NFC")]
        }],
        [2, () => ["id", presenceJson(rng, { ...p, id: rng.pick(world.honest.filter((x) => x !== h)).id }, sig), false]],
        [2, () => ["proto", presenceJson(rng, { ...p, proto: rng.pick([undefined, "p2pchat/9", "classic", ""]) }, sig), true]],
        [2, () => ["extra field", presenceJson(rng, p, sig, [[rng.pick(["note", "x", "seq", "addr"]), randomScalar(rng)]]), true]],
        [1, () => ["port 6001 spelt out", presenceJson(rng, { ...p, port: p.port ?? (p.tag === "Announcement" ? 6001 : undefined) }, sig), true]],
        [1, () => ["status online spelt out", presenceJson(rng, { ...p, status: p.status ?? (p.tag === "Announcement" ? "online" : undefined) }, sig), true]],
        [2, () => ["name decomposed", presenceJson(rng, { ...p, username: nfd }, sig), true]],
        [1, () => ["signature's spare bits (a second spelling: refused)", presenceJson(rng, p, spareBitsVariant(sig)), true]]
      ])()
      return one(j, sourceOf(rng, world, h), ok, `signed ${h.label}, then its ${how} changed`)
    }],
    [2, () => {
      // Signed by its own key over the decomposed name: the receiver checks the NFC form.
      const h = honest()
      const p: Presence = { ...presenceOf(rng, h, stamp()), username: rng.pick(["Zo\u00eb", "\u00c9ve", "Jos\u00e9"]).normalize("NFD") }
      const sig = b64(h.sign(enc.encode(presenceSignedText("Announcement", { ...covered(p), username: p.username }))))
      return one(presenceJson(rng, p, sig), h.home, false, `signed ${h.label} over a decomposed name`)
    }],
    [6, () => {
      // Signing fields that the wire rules refuse (or, for stamps at the edge, accept).
      const h = rng.chance(0.5) ? world.burner : honest()
      const p = presenceOf(rng, h, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      const sig = b64(signWith(h, p))
      const badId = h.id.slice(0, 42) + rng.pick([..."BCDFGHJKLNOPRSTVWXZabdefhijlmnpqrtuvxyz12356790-_"])
      const [how, j, ok] = rng.weighted<() => readonly [string, J, boolean | undefined]>([
        [2, () => ["sig without id", drop(presenceJson(rng, p, sig), "id"), undefined]],
        [2, () => ["sig without ts", drop(presenceJson(rng, p, sig), "ts"), undefined]],
        [1, () => ["sig without both", drop(drop(presenceJson(rng, p, sig), "id"), "ts"), undefined]],
        [2, () => ["non-canonical id", presenceJson(rng, { ...p, id: badId }, sig), undefined]],
        [2, () => ["sig of another length", presenceJson(rng, p, rng.pick([sig.slice(1), sig + "A", sig.slice(0, 43), ""])), undefined]],
        [1, () => ["sig in base64", presenceJson(rng, p, sig.replace(/-/g, "+").replace(/_/g, "/").slice(0, 84) + "=="), undefined]],
        [1, () => ["sig not a string", presenceJson(rng, p, undefined, [["sig", rng.pick<J>([null, 5, [sig], obj(["sig", sig])])]]), undefined]],
        [3, () => {
          const ts = rng.pick<J>([0, -1, 1.5, -0, 2 ** 53, { raw: "1e400" }, "123", null, { raw: "9007199254740993" }])
          return ["stamp out of range", replace(presenceJson(rng, p, sig), "ts", ts), undefined]
        }],
        [2, () => {
          // Stamps at the edge are fine; the burner alone uses them (2^53 - 1 would freeze its key).
          const b = world.burner
          const q = presenceOf(rng, b, rng.pick([1, 2 ** 53 - 1, stamp()]))
          return ["stamp at the edge", signedJson(b, q), true]
        }]
      ])()
      return one(j, sourceOf(rng, world, h), ok, `${how} (${h.label})`)
    }],
    [6, () => {
      // An honest key signs for a name that is not its own: another signer's, or an unsigned peer's.
      const b = honest()
      const other = rng.chance(0.6) ? honest() : undefined
      const q = rng.pick(world.plain)
      const [whose, name] = other !== undefined ? [other.label, rng.pick(other.names)] : [q.label, q.name]
      const p = presenceOf(rng, b, stamp(), "Announcement", name)
      return one(signedJson(b, p), sourceOf(rng, world, b), true, `${b.label} signs ${whose}'s name`)
    }],
    [16, () => {
      // Peers that do not sign: announcements (from home mostly, elsewhere sometimes, now and
      // then under another id) and byes.
      const q = rng.pick(world.plain)
      const id = rng.chance(0.9) ? q.id : rng.pick([undefined, keyIdText(rng), rng.pick(world.plain).id])
      const from = rng.chance(0.7) ? q.home : rng.int(0, world.sources - 1)
      const j = rng.chance(0.85)
        ? obj(
          ["username", rng.chance(0.2) ? nameVariant(rng, q.name) : q.name],
          q.id !== undefined ? ["proto", "p2pchat/1"] : undefined,
          rng.chance(0.5) ? ["port", rng.int(1, 65535)] : undefined,
          rng.chance(0.5) ? ["status", rng.pick(["online", "away"])] : undefined,
          id !== undefined ? ["id", id] : undefined
        )
        : obj(["bye", q.name], id !== undefined ? ["id", id] : undefined)
      return one(j, from, undefined, `unsigned ${q.label}${id !== q.id ? " (another id)" : ""}`)
    }],
    [10, () => {
      const h = rng.chance(0.9) ? honest() : rng.pick(world.forgers)
      const p = presenceOf(rng, h, stamp(), rng.chance(0.8) ? "Announcement" : "Bye")
      const j = signedJson(h, p)
      if (rng.chance(0.6)) {
        const m = mutateTree(rng, j)
        return one(m.value, sourceOf(rng, world, h), undefined, `signed ${h.label}, tree:${m.ops.join(",")}`)
      }
      const m = mutateBytes(rng, toBytes(j), 2)
      return { datagrams: [{ bytes: m.value, from: sourceOf(rng, world, h) }], desc: `signed ${h.label}, bytes:${m.ops.join(",")}` }
    }]
  ])()
}

const registryName = (n: string): string => n.normalize("NFC").toLowerCase()
const drop = (j: J, key: string): J => (isObj(j) ? { obj: j.obj.filter(([k]) => k !== key) } : j)
const replace = (j: J, key: string, value: J): J => (isObj(j) ? { obj: j.obj.map(([k, v]) => [k, k === key ? value : v] as const) } : j)

/**
 * A datagram case: valid, mutated (tree and/or bytes), random, oversized or deeply nested;
 * with a world, also signed presence among its identities (`index`: the case's stamps).
 */
export const datagramCase = (rng: Rng, ownId: string | undefined, world?: World, index = 0): DatagramCase => {
  const seed = () => (rng.chance(0.8) ? announcement(rng, ownId) : bye(rng))
  const indent = () => (rng.chance(0.1) ? 4 : 0)
  const from = () => (world === undefined ? 0 : anySource(rng, world))
  const single = (bytes: Uint8Array, desc: string): DatagramCase => ({ datagrams: [{ bytes, from: from() }], desc })
  return rng.weighted<() => DatagramCase>([
    [world === undefined ? 0 : 100, () => signedCase(rng, world!, index)],
    [10, () => single(toBytes(seed(), indent()), "valid")],
    [3, () => single(toBytes(announcement(new Rng(rng.u32()), ownId)), "valid announcement")],
    [35, () => {
      const m = mutateTree(rng, seed())
      return single(toBytes(m.value, indent()), `tree:${m.ops.join(",")}`)
    }],
    [22, () => {
      const m = mutateBytes(rng, toBytes(seed(), indent()))
      return single(m.value, `bytes:${m.ops.join(",")}`)
    }],
    [8, () => {
      const t = mutateTree(rng, seed())
      const m = mutateBytes(rng, toBytes(t.value))
      return single(m.value, `tree:${t.ops.join(",")}+bytes:${m.ops.join(",")}`)
    }],
    [7, () => single(toBytes(randomJson(rng, 4)), "random-json")],
    [6, () => single(rng.bytes(rng.skewed(1500)), "random-bytes")],
    [4, () => {
      const pad = "x".repeat(rng.pick([1000, 1025, 2000, 9000, 60_000]))
      return single(toBytes(obj(["username", validUsername(rng)], ["pad", pad])), "oversized")
    }],
    [4, () => {
      const levels = rng.pick([10, 64, 65, 300, 500, 511])
      const where = rng.int(0, 2)
      const v = nested(rng, levels, "x")
      const j = where === 0 ? obj(["username", v]) : where === 1 ? obj(["username", validUsername(rng)], ["deep", v]) : v
      return single(toBytes(j), `deep:${levels}`)
    }],
    [3, () => {
      const j = obj(pollution(rng), ["username", validUsername(rng)], rng.chance(0.5) ? pollution(rng) : undefined)
      return single(toBytes(j), "pollution")
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
