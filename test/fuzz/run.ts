/**
 * The fuzz run, shared by test/integration/fuzz.test.ts (a modest count in `npm test`) and
 * scripts/fuzz.ts (`npm run fuzz -- --runs N`). Cases are mixed: most go to the pure
 * decoders (fast), a large share over real sockets into one in-process node (Discovery on
 * UDP, the Responder on TCP, both dialects). After every batch of network cases the node's
 * state is checked as a whole: counts, registry, History, pins, no prototype pollution, and
 * that it still serves a well-behaved peer.
 */
import * as net from "node:net"
import { generateKeyPair, type KeyPair } from "../../src/domain/Noise.ts"
import type { Peer } from "../../src/domain/Peer.ts"
import { usernameKey } from "../../src/domain/Presence.ts"
import { classicPlan, datagramCase, noisePlan, randomStreamPlan, secureLikeStream } from "./cases.ts"
import { keyIdText, obj, toBytes } from "./gen.ts"
import { makeWorld } from "./identities.ts"
import { startFuzzNode } from "./node.ts"
import { isKeyId, isMessageId, isPort, isUsername, isUsernameKey, type ModelPeer, PresenceModel } from "./oracle.ts"
import { checkDatagram, checkNoise, checkStream, type Failure, makeNoiseFixtures, preview } from "./pure.ts"
import { Rng, randomSeed } from "./rng.ts"
import { classicCase, Client, type NetContext, type NetResult, noiseCase, WAIT_MS } from "./tcp.ts"
import { MAX_UDP_PAYLOAD, pollUntil, udpSenders } from "./udp.ts"

export type Kind = "presence" | "stream" | "noise" | "udp" | "tcp-classic" | "tcp-random" | "tcp-noise"

export const KINDS: ReadonlyArray<Kind> = ["presence", "stream", "noise", "udp", "tcp-classic", "tcp-random", "tcp-noise"]

/** Share of each kind of case (relative weights). */
export const DEFAULT_MIX: Readonly<Record<Kind, number>> = {
  presence: 30,
  stream: 28,
  noise: 5,
  udp: 10,
  "tcp-classic": 17,
  "tcp-random": 3,
  "tcp-noise": 7
}

export interface FuzzOptions {
  readonly runs: number
  readonly seed?: number | undefined
  /** Replay only these case indices (of a run with `seed`). */
  readonly cases?: ReadonlyArray<number> | undefined
  /** Only these kinds (cases keep their index, so a replay needs the same list). */
  readonly kinds?: ReadonlyArray<Kind> | undefined
  /** Connections open at once. */
  readonly concurrency?: number | undefined
  /** Network cases between two whole-node checks. */
  readonly batch?: number | undefined
  /** Failures reported in detail (all are counted). */
  readonly maxReports?: number | undefined
  readonly onProgress?: ((p: { readonly done: number; readonly runs: number; readonly elapsedMs: number; readonly failures: number }) => void) | undefined
}

export interface FailureReport {
  readonly case: number | undefined
  readonly kind: string
  readonly property: string
  readonly detail: string
  readonly input: string
  readonly replay: string
}

export interface FuzzSummary {
  readonly seed: number
  readonly runs: number
  readonly elapsedMs: number
  readonly byKind: Readonly<Record<string, number>>
  readonly failures: number
  readonly reports: ReadonlyArray<FailureReport>
  /** What the network cases did. */
  readonly connections: number
  readonly refused: number
  readonly outcomes: Readonly<Record<string, number>>
  readonly secureUnsupported: number
  readonly datagrams: number
  readonly discovery: { readonly received: number; readonly accepted: number; readonly own: number; readonly rejected: number }
  /** Signed presence, as the rules' model of the registry counted it. */
  readonly presence: {
    readonly replayed: number
    readonly badSignature: number
    readonly effects: Readonly<Record<string, number>>
    readonly peers: number
    readonly signedPeers: number
    readonly sources: number
  }
  readonly historyRows: number
  readonly pins: number
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/
/** A text as History stores it: a lone surrogate becomes U+FFFD (History.ts). */
const normalize = (text: string): string => text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd")
const sum = (r: Readonly<Record<string, number>>) => Object.values(r).reduce((a, b) => a + b, 0)

export const runFuzz = async (options: FuzzOptions): Promise<FuzzSummary> => {
  const started = Date.now()
  const seed = (options.seed ?? randomSeed()) >>> 0
  const indices = options.cases ?? Array.from({ length: options.runs }, (_, i) => i)
  const kinds = options.kinds ?? KINDS
  const mix = kinds.map((k) => [DEFAULT_MIX[k], k] as const)
  const concurrency = options.concurrency ?? 24
  const batchSize = options.batch ?? 500
  const maxReports = options.maxReports ?? 30
  const replayFlags = options.kinds !== undefined ? ` --kinds ${kinds.join(",")}` : ""

  const reports: Array<FailureReport> = []
  let failureCount = 0
  const fail = (index: number | undefined, kind: string, f: Failure, input: string) => {
    failureCount++
    if (reports.length < maxReports) {
      reports.push({
        case: index,
        kind,
        property: f.property,
        detail: f.detail,
        input,
        replay: index === undefined
          ? `npm run fuzz -- --seed ${seed} --runs ${options.runs}${replayFlags}`
          : `npm run fuzz -- --seed ${seed} --case ${index}${replayFlags}`
      })
    }
  }

  // Log lines of refused connections, by the client's port.
  const logged = new Map<number, Array<string>>()
  const unattributed: Array<string> = []
  const node = await startFuzzNode({
    onLog: (line) => {
      if (line.message.startsWith("discovery:")) return
      // What the user is told of names (a look-alike, a pinned name announced otherwise) is
      // expected: the fuzzer's names clash on purpose, and its sessions pin them.
      if (/^(responder|presence): (the name .* looks like .*, but it is another user|.* is announced from .*someone may be impersonating)/.test(line.message)) return
      // The frame cap biting is the point of the oversized cases; its periodic summary names no connection.
      if (/^responder: limit reached: frame larger than/.test(line.message) && !/127\.0\.0\.1:\d+/.test(line.message)) return
      const m = /127\.0\.0\.1:(\d+)/.exec(line.message)
      if (m === null) {
        unattributed.push(`[${line.level}] ${line.message}`)
        return
      }
      const port = Number(m[1])
      const list = logged.get(port)
      if (list === undefined) logged.set(port, [line.message])
      else list.push(line.message)
    }
  })
  const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort().join(",")
  const clientKeys: ReadonlyArray<KeyPair> = Array.from({ length: 8 }, () => generateKeyPair())
  const ctx: NetContext = {
    port: node.tcpPort,
    nodeName: node.name,
    nodeKey: node.ownPublicKey,
    takeLogged: (port) => {
      const list = logged.get(port) ?? []
      logged.delete(port)
      return list
    },
    secureUnsupported: () => (node.responderStats().rejectedByReason["Unsupported"] ?? 0) > 0,
    keys: clientKeys
  }
  // Presence: the run's identities, senders at several loopback addresses, and the rules'
  // model of what the node's registry must hold.
  const world = makeWorld(seed)
  const senders = await udpSenders(node.udpPort, world.sources)
  const model = new PresenceModel(node.ownId)
  const noiseFixtures = makeNoiseFixtures()

  const byKind: Record<string, number> = {}
  const outcomes: Record<string, number> = { good: 0, bad: 0, unknown: 0 }
  let connections = 0
  let refused = 0
  let secureUnsupported = 0
  // Discovery: what it must have counted (model.counts).
  let udpSent = 0
  const acceptedKeys = new Set<string>()
  // History and pins: what may and must be there.
  const ackedIds = new Set<string>()
  const secureMay = new Set<string>()
  const secureMust = new Set<string>()
  const pinnable = new Set<string>()
  let batchFirst = 0
  let liveness = 0
  let historyRows = 0
  let pinCount = 0

  const inflight = new Set<Promise<void>>()
  const track = (index: number, kind: Kind, desc: () => string, p: Promise<NetResult>) => {
    const done: Promise<void> = p.then(
      (r) => {
        if (r.connected) connections++
        if (r.refused) refused++
        outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1
        if (r.secureUnsupported) secureUnsupported++
        for (const id of r.acked) ackedIds.add(id)
        if (r.secure !== undefined) {
          const peer = normalize(r.secure.peer)
          for (const t of r.secure.mayStore) secureMay.add(`${peer}\u0000${normalize(t)}`)
          for (const t of r.secure.mustStore) secureMust.add(`${peer}\u0000${normalize(t)}`)
          if (r.secure.pinnable) pinnable.add(peer)
        }
        for (const f of r.failures) fail(index, kind, f, desc())
      },
      (e: unknown) => fail(index, kind, { property: "the fuzz client itself", detail: String((e as Error)?.stack ?? e) }, desc())
    ).finally(() => inflight.delete(done))
    inflight.add(done)
  }

  const sendDatagram = async (bytes: Uint8Array, from = 0): Promise<boolean> => {
    const ok = await senders[from]!.send(bytes)
    if (!ok) return false
    udpSent++
    const outstanding = () => udpSent - node.discoveryStats().received
    // Keep the kernel's receive buffer far from full: a few small datagrams, or one big one.
    if (outstanding() >= 16 || bytes.length > 4096) await pollUntil(() => outstanding() <= 0, WAIT_MS)
    return true
  }

  /** A datagram sent: what the rules say it does (in sending order, which is the node's). */
  const account = (bytes: Uint8Array, from: number, what: string) => {
    const sender = senders[from]!
    const fate = model.receive(bytes, sender.address, sender.port, what)
    if (fate.counted === "accepted" && fate.key !== undefined && fate.effect !== "none") acceptedKeys.add(fate.key)
  }

  const PEER_FIELDS = ["username", "address", "udpPort", "port", "proto", "id", "manualAway", "signed"] as const
  const modelOf = (p: Peer): ModelPeer => ({
    username: p.username,
    key: p.key,
    address: p.address,
    udpPort: p.udpPort,
    port: p.port,
    proto: p.proto,
    id: p.id,
    manualAway: p.manualAway,
    signed: p.signed
  })
  const show = (p: ModelPeer | undefined) => (p === undefined ? "none" : JSON.stringify(Object.fromEntries(PEER_FIELDS.map((f) => [f, p[f] ?? null]))))
  /** Where the node's registry differs from the rules' model: one line per name. */
  const registryDiffs = (peers: ReadonlyArray<Peer>): Array<{ property: string; detail: string }> => {
    const node = new Map(peers.map((p) => [p.key, modelOf(p)]))
    const keys = new Set([...node.keys(), ...model.entries.keys()])
    const out: Array<{ property: string; detail: string }> = []
    for (const key of keys) {
      const n = node.get(key)
      const m = model.entries.get(key)
      const differs = n === undefined || m === undefined ? PEER_FIELDS : PEER_FIELDS.filter((f) => n[f] !== m[f])
      if (differs.length === 0) continue
      const property = m === undefined
        ? "nothing is registered but what the rules admit"
        : n === undefined
        ? m.signed
          ? "a signed entry is removed only by a signed bye of its key"
          : "an entry is removed only by a bye of its identity (signed, or from its address)"
        : (m.signed || n.signed) && differs.some((f) => f === "address" || f === "port" || f === "id" || f === "udpPort")
        ? "a signed entry's address, port and id change only by a valid fresh signed announcement of its key"
        : differs.includes("signed")
        ? "only a valid fresh signed announcement makes an entry signed, and it stays signed"
        : "the registry holds what the rules make of the announcements"
      out.push({
        property,
        detail: `${JSON.stringify(key)} differs in ${differs.join(", ")}: node ${show(n)}, rules ${show(m)}; ` +
          `datagrams on this name: ${(model.history.get(key) ?? []).join(" | ") || "none"}`
      })
    }
    return out
  }

  /** The whole node after a batch: counts, registry, History, pins, pollution, still serving. */
  const checkNode = async (first: number, last: number) => {
    const batchFail = (property: string, detail: string) =>
      fail(undefined, "node", { property, detail }, `cases ${first}..${last} of seed ${seed}`)
    await Promise.all([...inflight])

    // Still serving: a valid announcement is registered, a well-behaved peer gets its ack.
    liveness++
    const liveName = `live-${liveness}`
    const announcement = toBytes(obj(["username", liveName], ["proto", "p2pchat/1"], ["port", 4242], ["id", keyIdText(new Rng(liveness))]))
    if (!(await sendDatagram(announcement))) batchFail("the fuzz can send datagrams", "send failed")
    else account(announcement, 0, `liveness ${liveness}`)
    if (!(await waitForPeer(liveName))) {
      batchFail("Discovery keeps serving: a valid announcement after the fuzz is registered", `${liveName} not in the registry`)
    }
    const liveId = `live-${seed}-${liveness}`
    try {
      const c = await Client.connect(node.tcpPort)
      connections++
      c.write(new TextEncoder().encode(JSON.stringify({ unencrypted_message: Buffer.from(`alive ${liveness}`).toString("base64"), id: liveId, from: "liveness" }) + "\n"))
      const got = await c.waitFor(() => c.lines.some((l) => (l as { ack?: string })?.ack === liveId), WAIT_MS)
      c.end()
      await c.waitFor(() => c.closed, WAIT_MS)
      if (ctx.takeLogged(c.localPort).length > 0) batchFail("the responder takes a well-behaved peer", "it was refused")
      if (!got) batchFail("the responder keeps serving: a well-behaved peer gets its ack", "no ack")
      else ackedIds.add(liveId)
    } catch (e) {
      batchFail("the responder keeps serving: a well-behaved peer connects", (e as Error).message)
    }

    // Discovery counted every datagram, each the way the rules decide.
    const handled = () => {
      const s = node.discoveryStats()
      return s.accepted + s.own + s.rejected
    }
    if (!(await pollUntil(() => node.discoveryStats().received >= udpSent && handled() >= udpSent, WAIT_MS))) {
      batchFail("Discovery counts every datagram", `received ${node.discoveryStats().received} of ${udpSent} sent (socket dropped ${node.udpDropped()})`)
    }
    const d = node.discoveryStats()
    if (d.received !== d.accepted + d.own + d.rejected) {
      batchFail("Discovery: received == accepted + own + rejected", JSON.stringify(d))
    }
    const expected = { accepted: model.counts.accepted, own: model.counts.own, rejected: model.counts.rejected }
    if (d.accepted !== expected.accepted || d.own !== expected.own || d.rejected !== expected.rejected) {
      batchFail("Discovery counts each datagram as the rules decide", `counted ${JSON.stringify({ accepted: d.accepted, own: d.own, rejected: d.rejected })}, expected ${JSON.stringify(expected)}`)
    }
    if (sum(d.rejectedByReason) !== d.rejected) batchFail("Discovery: rejections by reason add up", JSON.stringify(d))
    const replayed = d.rejectedByReason["replayed"] ?? 0
    if (replayed !== model.counts.replayed) {
      batchFail("a signed datagram whose stamp is not above its key's last is refused and counted as replayed", `counted ${replayed}, the rules say ${model.counts.replayed}`)
    }
    const badSignature = d.rejectedByReason["bad signature"] ?? 0
    if (badSignature !== model.counts.badSignature) {
      batchFail("a datagram whose signature is not its key's (fresh stamp) is refused and counted as a bad signature", `counted ${badSignature}, the rules say ${model.counts.badSignature}`)
    }
    if ((d.rejectedByReason["rate-limited"] ?? 0) > 0) batchFail("the fuzz node's rate limit never bites", JSON.stringify(d.rejectedByReason))

    // The registry is what the rules make of the datagrams, in the order sent. (Discovery
    // counts a datagram a moment before the registry has it: a difference gets a moment.)
    let diffs = registryDiffs(await node.peers())
    for (let i = 0; i < 5 && diffs.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50))
      diffs = registryDiffs(await node.peers())
    }
    for (const x of diffs.slice(0, 8)) batchFail(x.property, x.detail)
    if (diffs.length > 8) batchFail("the registry holds what the rules make of the announcements", `and ${diffs.length - 8} more names differ`)
    if (diffs.length > 0) {
      // Take the node's registry as the model's from here, so one slip is reported once.
      model.entries.clear()
      for (const p of await node.peers()) model.entries.set(p.key, modelOf(p))
    }

    // Nothing invalid in the registry, and nothing that was not announced validly.
    for (const p of await node.peers()) {
      const problems = [
        isUsername(p.username) ? "" : "username",
        p.key === usernameKey(p.username) ? "" : "key",
        isPort(p.port) ? "" : "port",
        p.id === undefined || isKeyId(p.id) ? "" : "id",
        net.isIPv4(p.address) ? "" : "address",
        acceptedKeys.has(p.key) ? "" : "never validly announced"
      ].filter((x) => x !== "")
      if (problems.length > 0) batchFail("every registry entry is valid", `${problems.join(", ")}: ${preview(JSON.stringify(p))}`)
    }

    // The responder: every connection counted, every refusal counted, none left open.
    if (!(await pollUntil(() => node.responderStats().active === 0, WAIT_MS))) {
      batchFail("the responder closes every connection", `${node.responderStats().active} still active`)
    }
    const s = node.responderStats()
    if (s.accepted !== connections) batchFail("the responder counts every connection", `accepted ${s.accepted}, clients made ${connections}`)
    if (s.rejected !== refused) batchFail("every refusal is logged and counted once", `stats.rejected ${s.rejected}, refusals logged ${refused}`)
    if (sum(s.rejectedByReason) !== s.rejected) batchFail("the responder's rejections by reason add up", JSON.stringify(s.rejectedByReason))
    if (s.storageFailures !== 0) batchFail("no message fails to be stored", `${s.storageFailures} storage failures`)

    // History: only valid rows; every ack means stored; secure rows only from intact frames.
    const rows = await node.history()
    historyRows = rows.length
    const receivedIds = new Set<string>()
    const securePairs = new Set<string>()
    for (const r of rows) {
      const problems = [
        r.direction === "received" ? "" : "direction",
        r.state === "received" ? "" : "state",
        ["plain", "classic-3des", "noise"].includes(r.mode) ? "" : "mode",
        typeof r.text === "string" ? "" : "text",
        isMessageId(r.id) ? "" : "id",
        ISO.test(r.at) && !Number.isNaN(Date.parse(r.at)) ? "" : "at",
        isUsernameKey(r.peer) || r.peer === "unknown (127.0.0.1)" ? "" : "peer"
      ].filter((x) => x !== "")
      if (problems.length > 0) batchFail("every History row is valid", `${problems.join(", ")}: ${preview(JSON.stringify(r))}`)
      receivedIds.add(r.id)
      if (r.mode === "noise") {
        const pair = `${r.peer}\u0000${normalize(r.text)}`
        securePairs.add(pair)
        if (!secureMay.has(pair)) {
          batchFail("nothing from a tampered secure session is stored", `row ${preview(JSON.stringify(r))} is not from an intact frame`)
        }
      }
    }
    for (const id of ackedIds) {
      if (!receivedIds.has(id)) batchFail("an acked message is stored", `ack ${preview(id)} but no row`)
    }
    ackedIds.clear()
    for (const pair of secureMust) {
      if (!securePairs.has(pair)) batchFail("every intact secure message is stored", preview(pair.replace("\u0000", ": ")))
    }
    secureMust.clear()
    const pins = await node.pins()
    pinCount = pins.length
    for (const p of pins) {
      if (!pinnable.has(p.username)) batchFail("only a completed handshake pins a key", `pin for ${preview(p.username)}`)
    }

    // No prototype pollution anywhere in this process.
    if (({} as Record<string, unknown>)["polluted"] !== undefined || Object.getOwnPropertyNames(Object.prototype).sort().join(",") !== protoKeys) {
      batchFail("no prototype pollution", `Object.prototype now has ${Object.getOwnPropertyNames(Object.prototype).join(",")}`)
    }
    for (const line of unattributed.splice(0)) batchFail("the node logs no unexplained warning or error", line)
    for (const [port, lines] of logged) {
      // Logged after its client gave up on it (already a failure of that case): count it
      // here, so that the counts of later batches line up again.
      batchFail("each refusal is logged while its connection is open", `port ${port}: ${lines.join(" | ").slice(0, 300)}`)
      refused++
    }
    logged.clear()
  }

  const waitForPeer = async (name: string) => {
    const deadline = Date.now() + WAIT_MS
    while (Date.now() < deadline) {
      const p = await node.lookup(name)
      if (p !== undefined && p.port === 4242) return true
      await new Promise((r) => setTimeout(r, 5))
    }
    return false
  }

  let lastProgress = Date.now()
  let networkInBatch = 0
  try {
    for (let n = 0; n < indices.length; n++) {
      const index = indices[n]!
      const rng = Rng.forCase(seed, index)
      const kind = rng.weighted(mix)
      byKind[kind] = (byKind[kind] ?? 0) + 1
      const tag = `f${seed.toString(36)}.${index}`
      switch (kind) {
        case "presence": {
          const d = datagramCase(rng, node.ownId, world, index)
          for (const g of d.datagrams) for (const f of checkDatagram(g.bytes, g.sigOk)) fail(index, kind, f, `${d.desc}: ${preview(g.bytes)}`)
          break
        }
        case "stream": {
          const which = rng.int(0, 3)
          if (which === 3) {
            const s = secureLikeStream(rng)
            for (const f of checkStream(s.bytes, rng, s.pristine)) fail(index, kind, f, `${s.desc}: ${preview(s.bytes)}`)
          } else {
            const plan = which === 2 ? randomStreamPlan(rng, tag) : classicPlan(rng, tag)
            const bytes = Buffer.concat([plan.phaseA, plan.phaseB(rng.chance(0.5) ? Buffer.from(rng.bytes(24)) : undefined)])
            for (const f of checkStream(bytes, rng)) {
              fail(index, kind, f, `${plan.desc}: ${preview(bytes)}`)
            }
            if (plan.pristine !== undefined) {
              for (const f of checkStream(plan.phaseA, rng, plan.pristine)) fail(index, kind, f, `${plan.desc}: ${preview(plan.phaseA)}`)
            }
          }
          break
        }
        case "noise": {
          let found: Array<Failure>
          try {
            found = checkNoise(rng, noiseFixtures)
          } catch (e) {
            found = [{ property: "the Noise fuzz itself", detail: String((e as Error)?.stack ?? e) }]
          }
          for (const f of found) fail(index, kind, f, "noise handshake/transport mutation")
          break
        }
        case "udp": {
          const d = datagramCase(rng, node.ownId, world, index)
          for (const [k, g] of d.datagrams.entries()) {
            const bytes = g.bytes.length > MAX_UDP_PAYLOAD ? g.bytes.subarray(0, MAX_UDP_PAYLOAD) : g.bytes
            for (const f of checkDatagram(bytes, g.sigOk)) fail(index, kind, f, `${d.desc}: ${preview(bytes)}`)
            if (await sendDatagram(bytes, g.from)) account(bytes, g.from, `case ${index}${d.datagrams.length > 1 ? `.${k}` : ""} ${d.desc} from ${senders[g.from]!.address}`)
          }
          networkInBatch++
          break
        }
        case "tcp-classic":
        case "tcp-random": {
          const plan = kind === "tcp-classic" ? classicPlan(rng, tag) : randomStreamPlan(rng, tag)
          track(index, kind, () => `${plan.desc}: ${preview(plan.phaseA)}`, classicCase(ctx, plan))
          networkInBatch++
          break
        }
        case "tcp-noise": {
          const plan = noisePlan(rng, tag, index)
          track(index, kind, () => plan.desc, noiseCase(ctx, plan, rng))
          networkInBatch++
          break
        }
      }
      if (({} as Record<string, unknown>)["polluted"] !== undefined) {
        fail(index, kind, { property: "no prototype pollution", detail: "({}).polluted is set" }, "")
        delete (Object.prototype as Record<string, unknown>)["polluted"]
      }
      while (inflight.size >= concurrency) await Promise.race(inflight)
      if (n % 64 === 63) await new Promise((r) => setImmediate(r))
      if (networkInBatch >= batchSize) {
        await checkNode(batchFirst, index)
        batchFirst = index + 1
        networkInBatch = 0
      }
      if (options.onProgress !== undefined && Date.now() - lastProgress > 2000) {
        lastProgress = Date.now()
        options.onProgress({ done: n + 1, runs: indices.length, elapsedMs: Date.now() - started, failures: failureCount })
      }
    }
    await checkNode(batchFirst, indices.at(-1) ?? 0)
  } finally {
    await Promise.allSettled([...inflight])
    for (const sender of senders) await sender.close()
    await node.close()
  }
  const d = node.discoveryStats()
  return {
    seed,
    runs: indices.length,
    elapsedMs: Date.now() - started,
    byKind,
    failures: failureCount,
    reports,
    connections,
    refused,
    outcomes,
    secureUnsupported,
    datagrams: udpSent,
    discovery: { received: d.received, accepted: d.accepted, own: d.own, rejected: d.rejected },
    presence: {
      replayed: model.counts.replayed,
      badSignature: model.counts.badSignature,
      effects: { ...model.effects },
      peers: model.entries.size,
      signedPeers: [...model.entries.values()].filter((p) => p.signed).length,
      sources: new Set(senders.map((x) => x.address)).size
    },
    historyRows,
    pins: pinCount
  }
}

/** The summary as lines of text (the script prints them; a failing test shows them). */
export const formatSummary = (s: FuzzSummary): string => {
  const lines = [
    `fuzz: ${s.runs} cases, seed ${s.seed}, ${(s.elapsedMs / 1000).toFixed(1)} s, ${s.failures} failure${s.failures === 1 ? "" : "s"}`,
    `  cases by kind: ${Object.entries(s.byKind).map(([k, v]) => `${k} ${v}`).join(", ")}`,
    `  connections: ${s.connections} (refused and counted ${s.refused}; predicted good ${s.outcomes["good"] ?? 0}, ` +
    `bad ${s.outcomes["bad"] ?? 0}, unpredictable ${s.outcomes["unknown"] ?? 0})`,
    `  datagrams: ${s.datagrams} (accepted ${s.discovery.accepted}, own ${s.discovery.own}, rejected ${s.discovery.rejected}: ` +
    `${s.presence.replayed} replayed, ${s.presence.badSignature} bad signatures) from ${s.presence.sources} addresses`,
    `  registry: ${s.presence.peers} peers (${s.presence.signedPeers} signed) as the rules predict; accepted datagrams did: ` +
    Object.entries(s.presence.effects).sort().map(([k, v]) => `${k} ${v}`).join(", "),
    `  history rows ${s.historyRows}, pins ${s.pins}`
  ]
  if (s.secureUnsupported > 0) {
    lines.push(`  note: the responder refused ${s.secureUnsupported} secure sessions as unsupported; their transport cases did not run`)
  }
  for (const r of s.reports) {
    lines.push(`  FAIL [${r.kind}${r.case === undefined ? "" : ` case ${r.case}`}] ${r.property}: ${r.detail}`)
    if (r.input !== "") lines.push(`       input: ${r.input.slice(0, 400)}`)
    lines.push(`       replay: ${r.replay}`)
  }
  if (s.failures > s.reports.length) lines.push(`  ... and ${s.failures - s.reports.length} more`)
  return lines.join("\n")
}
