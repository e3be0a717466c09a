/**
 * Fuzz clients of the responder over real loopback TCP. Each case is one connection that
 * plays a plan (cases.ts), reads what the responder answers, and ends the way a peer would:
 * after bad input it waits for the responder to hang up; otherwise it waits for the acks
 * the rules promise, then hangs up itself. The prediction (oracle.ts) says what the
 * responder must have done; the refusal is matched with the responder's log line for the
 * client's port.
 */
import * as net from "node:net"
import { classicKey24, classicShared } from "../../src/domain/Classic.ts"
import { decodeFrame } from "../../src/domain/Frames.ts"
import { createHandshake, type KeyPair, MAX_PLAINTEXT_LENGTH, type Transport } from "../../src/domain/Noise.ts"
import { usernameKey } from "../../src/domain/Presence.ts"
import { type ClassicPlan, classifyInner, concat, type NoisePlan } from "./cases.ts"
import { type J, obj, toText } from "./gen.ts"
import { type Outcome, type Prediction, predictClassic, predictSecureTransport, type SentCipher, splitStream, type StreamSplit } from "./oracle.ts"
import { type Failure, preview } from "./pure.ts"
import { Rng } from "./rng.ts"

const LOOPBACK = "127.0.0.1"
const enc = new TextEncoder()
const PROLOGUE = enc.encode("p2pchat/1")

/** How long a responder may take to do what it must (answer, hang up). Generous: CI is slow. */
export const WAIT_MS = 5_000

// ---------------------------------------------------------------------------------------------
// A raw client

export class Client {
  readonly lines: Array<unknown> = []
  /** Lines that were not JSON. */
  readonly garbage: Array<string> = []
  closed = false
  private text = ""
  private waiters = new Set<() => void>()

  private constructor(readonly socket: net.Socket, readonly localPort: number) {
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => {
      this.text += chunk
      let nl: number
      while ((nl = this.text.indexOf("\n")) >= 0) {
        const line = this.text.slice(0, nl)
        this.text = this.text.slice(nl + 1)
        if (line.trim() === "") continue
        try {
          this.lines.push(JSON.parse(line))
        } catch {
          this.garbage.push(line)
        }
      }
      this.wake()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      this.closed = true
      this.wake()
    })
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: LOOPBACK, port, noDelay: true })
      socket.once("error", reject)
      socket.once("connect", () => {
        socket.off("error", reject)
        resolve(new Client(socket, socket.localPort ?? 0))
      })
    })
  }

  private wake() {
    for (const w of [...this.waiters]) w()
  }

  /** Resolves true once `cond` holds, false after `ms`. */
  waitFor(cond: () => boolean, ms: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true)
    return new Promise((resolve) => {
      const check = () => {
        if (!cond()) return
        done(true)
      }
      const timer = setTimeout(() => done(false), ms)
      const done = (v: boolean) => {
        clearTimeout(timer)
        this.waiters.delete(check)
        resolve(v)
      }
      this.waiters.add(check)
    })
  }

  write(bytes: Uint8Array) {
    if (bytes.length > 0 && !this.socket.destroyed && this.socket.writable) this.socket.write(bytes)
  }

  /** Hangs up (FIN): the responder reads to the end, then closes. */
  end() {
    if (!this.socket.destroyed) this.socket.end()
  }

  destroy() {
    this.socket.destroy()
  }
}

// ---------------------------------------------------------------------------------------------
// Results

export interface NetResult {
  readonly failures: Array<Failure>
  /** A connection was made (the responder counts it as accepted). */
  readonly connected: boolean
  /** The responder logged a refusal for this connection. */
  readonly refused: boolean
  readonly outcome: Outcome
  /** Ack ids received from a plain/classic session: each must be in History. */
  readonly acked: ReadonlyArray<string>
  /** Secure sessions: the History key of the peer and what may / must be stored for it. */
  readonly secure?: {
    readonly peer: string
    readonly mayStore: ReadonlyArray<string>
    readonly mustStore: ReadonlyArray<string>
    /** The username may be pinned (the handshake completed). */
    readonly pinnable: boolean
  }
  /** The responder refused a secure session as not supported (before Noise sessions exist). */
  readonly secureUnsupported?: boolean
}

export interface NetContext {
  readonly port: number
  readonly nodeName: string
  readonly nodeKey: Uint8Array
  /** Log lines about the connection from this client port (taken, then forgotten). */
  readonly takeLogged: (port: number) => ReadonlyArray<string>
  /** True when the responder refused a secure session as unsupported since it started. */
  readonly secureUnsupported: () => boolean
  readonly keys: ReadonlyArray<KeyPair>
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

/**
 * Ends the connection as the prediction says, then checks that the responder's refusal (or
 * its absence) and its acks match. `acksOf` reads the acks received so far.
 */
const settle = async (
  c: Client,
  ctx: NetContext,
  pred: Prediction,
  acksOf: () => ReadonlyArray<string>,
  failures: Array<Failure>
): Promise<boolean> => {
  if (pred.outcome === "bad" && !pred.endsMidFrame) {
    if (!(await c.waitFor(() => c.closed, WAIT_MS))) {
      failures.push({ property: "the responder hangs up after bad input", detail: `still open after ${WAIT_MS} ms (${pred.why})` })
    }
  } else if (pred.outcome === "unknown") {
    await c.waitFor(() => c.closed, 150)
  } else if (!(await c.waitFor(() => c.closed || acksOf().length >= pred.acks.length, WAIT_MS))) {
    failures.push({
      property: "the responder acks every stored message",
      detail: `${acksOf().length} of ${pred.acks.length} acks after ${WAIT_MS} ms`
    })
  }
  c.end()
  if (!(await c.waitFor(() => c.closed, WAIT_MS))) {
    failures.push({ property: "the responder closes a connection the peer hung up", detail: `open ${WAIT_MS} ms after FIN` })
    c.destroy()
    await c.waitFor(() => c.closed, 1000)
  }
  const logged = ctx.takeLogged(c.localPort)
  const refused = logged.length > 0
  if (pred.outcome === "good" && refused) {
    failures.push({ property: "the responder takes a valid connection", detail: `it logged: ${logged.join(" | ").slice(0, 300)}` })
  }
  if (pred.outcome === "bad" && !refused) {
    failures.push({ property: "every refusal is logged and counted", detail: `no refusal logged for bad input (${pred.why})` })
  }
  const acks = acksOf()
  const prefixOk = acks.every((id, i) => i >= pred.acks.length ? pred.outcome === "unknown" : id === pred.acks[i])
  if (!prefixOk || (pred.outcome === "good" && acks.length !== pred.acks.length)) {
    failures.push({
      property: "acks are exactly those of the stored messages, in order",
      detail: `got [${acks.join(", ").slice(0, 200)}], expected [${pred.acks.join(", ").slice(0, 200)}] (${pred.outcome})`
    })
  }
  return refused
}

/** Connects, runs `body`, and turns a crash of the client itself into a failure (the connection still counts). */
const withClient = async (
  ctx: NetContext,
  body: (c: Client, failures: Array<Failure>) => Promise<Omit<NetResult, "failures" | "connected">>
): Promise<NetResult> => {
  const failures: Array<Failure> = []
  let c: Client
  try {
    c = await Client.connect(ctx.port)
  } catch (e) {
    failures.push({ property: "the responder keeps accepting connections", detail: (e as Error).message })
    return { failures, connected: false, refused: false, outcome: "unknown", acked: [] }
  }
  try {
    return { failures, connected: true, ...(await body(c, failures)) }
  } catch (e) {
    failures.push({ property: "the fuzz client itself", detail: String((e as Error)?.stack ?? e) })
    c.destroy()
    await c.waitFor(() => c.closed, 1000)
    return { failures, connected: true, refused: ctx.takeLogged(c.localPort).length > 0, outcome: "unknown", acked: [] }
  }
}

// ---------------------------------------------------------------------------------------------
// Classic and plain

export const classicCase = (ctx: NetContext, plan: ClassicPlan): Promise<NetResult> =>
  withClient(ctx, async (c, failures) => {
    const acks = () => c.lines.flatMap((l) => (isObject(l) && typeof l["ack"] === "string" ? [l["ack"]] : []))
    const keys = () => c.lines.flatMap((l) => (isObject(l) && Object.hasOwn(l, "key") ? [l["key"]] : []))

    c.write(plan.phaseA)
    const splitA = splitStream(plan.phaseA)
    const predA = predictClassic(splitA, undefined)
    const secureFirst = predA.outcome === "unknown" && predA.why === "secure session"
    let bytes = plan.phaseA
    if (!secureFirst && (predA.outcome !== "bad" || predA.endsMidFrame)) {
      if (predA.keyAnswers > 0) await c.waitFor(() => c.closed || keys().length >= predA.keyAnswers, WAIT_MS)
      const answers = keys()
      let key24: Uint8Array | undefined
      const sentKeys = keyValues(splitA, predA.keyAnswers)
      const a = sentKeys.at(-1)
      const b = answers[sentKeys.length - 1]
      if (a !== undefined && typeof b === "number" && Number.isSafeInteger(b)) key24 = classicKey24(classicShared(a, b))
      const phaseB = plan.phaseB(key24)
      c.write(phaseB)
      bytes = concat(plan.phaseA, phaseB)
    }
    const split = splitStream(bytes)
    // The prediction needs the responder's key numbers: wait for them when the stream has keys.
    const pre = predictClassic(split, undefined)
    if (pre.keyAnswers > keys().length && (pre.outcome !== "bad" || pre.endsMidFrame)) {
      await c.waitFor(() => c.closed || keys().length >= pre.keyAnswers, WAIT_MS)
    }
    const answers = keys()
    const pred = predictClassic(split, answers.map((k) => (typeof k === "number" ? k : NaN)))
    const refused = await settle(c, ctx, pred, acks, failures)

    for (const k of answers) {
      if (typeof k !== "number" || !Number.isInteger(k) || k < 0 || k > 18) {
        failures.push({ property: "the responder's key number is in 0..18", detail: JSON.stringify(k) })
      }
    }
    if (pred.outcome === "good" && answers.length !== pred.keyAnswers) {
      failures.push({ property: "every key frame is answered once", detail: `${answers.length} answers to ${pred.keyAnswers} keys` })
    }
    const other = c.lines.filter((l) => !(isObject(l) && (typeof l["ack"] === "string" || Object.hasOwn(l, "key")) && Object.keys(l).length === 1))
    if (other.length > 0 || c.garbage.length > 0) {
      failures.push({
        property: "a classic peer gets only key and ack frames",
        detail: preview(JSON.stringify([...other, ...c.garbage]).slice(0, 300))
      })
    }
    return { refused, outcome: pred.outcome, acked: acks() }
  })

/** The `key` values of the first `n` key frames of a split stream. */
const keyValues = (s: StreamSplit, n: number): Array<number> => {
  const out: Array<number> = []
  for (const text of s.frames) {
    if (out.length >= n) break
    const f = decodeFrame(text)
    if (f._tag === "Success" && f.success._tag === "Key") out.push(f.success.frame.key)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Secure sessions

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64")
const frameBytes = (j: J) => enc.encode(toText(j) + "\n")
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

/** Predicts a stream where the first frame must be handshake message `hs`, then transport frames. */
const predictAfterHandshake = (
  bytes: Uint8Array,
  hs: string,
  sent: ReadonlyArray<SentCipher>
): { pred: Prediction; intact: boolean } => {
  const s = splitStream(bytes)
  const none = (outcome: Outcome, why: string, endsMidFrame = false): Prediction => ({
    outcome,
    why,
    endsMidFrame,
    acks: [],
    keyAnswers: 0,
    stored: []
  })
  if (s.frames.length === 0) {
    if (s.framingError !== undefined) return { pred: none("bad", s.framingError), intact: false }
    // Hanging up during the handshake, mid-frame or not: the rules do not say how it is counted.
    return { pred: none("unknown", "hung up during the handshake", s.pending > 0), intact: false }
  }
  const first = decodeFrame(s.frames[0]!)
  if (first._tag === "Failure") return { pred: none("bad", "message 3 frame does not decode"), intact: false }
  if (first.success._tag !== "Handshake" || first.success.frame.hs !== hs) {
    return { pred: none("bad", "message 3 altered"), intact: false }
  }
  return { pred: predictSecureTransport({ ...s, frames: s.frames.slice(1) }, sent), intact: true }
}

export const noiseCase = (ctx: NetContext, plan: NoisePlan, rng: Rng): Promise<NetResult> =>
  withClient(ctx, async (c, failures) => {
    const peer = usernameKey(plan.username)
    const hs = createHandshake({ initiator: true, prologue: PROLOGUE, staticKey: rng.pick(ctx.keys) })
    const m1Frame = frameBytes(obj(["proto", "p2pchat/1"], ["hs", b64(hs.writeMessage())]))

    if (plan.mutateM1 !== undefined) {
      const bytes = plan.mutateM1(m1Frame)
      c.write(bytes)
      const s = splitStream(bytes)
      let pred: Prediction
      const first = s.frames.length > 0 ? decodeFrame(s.frames[0]!) : undefined
      if (first === undefined) {
        pred = s.framingError !== undefined
          ? { outcome: "bad", why: s.framingError, endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
          : s.pending > 0
          ? { outcome: "bad", why: "ClosedMidFrame", endsMidFrame: true, acks: [], keyAnswers: 0, stored: [] }
          : { outcome: "good", why: "", endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
      } else if (first._tag === "Success" && first.success._tag !== "Handshake") {
        pred = predictClassic(s, undefined)
      } else if (first._tag === "Failure") {
        pred = { outcome: "bad", why: "BadFrame", endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
      } else {
        pred = { outcome: "unknown", why: "altered message 1", endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
      }
      if (pred.outcome !== "bad") await c.waitFor(() => c.closed || c.lines.length > 0, 300)
      const acks = () => c.lines.flatMap((l) => (isObject(l) && typeof l["ack"] === "string" ? [l["ack"]] : []))
      const refused = await settle(c, ctx, pred, acks, failures)
      return { refused, outcome: pred.outcome, acked: acks(), secure: { peer, mayStore: [], mustStore: [], pinnable: false } }
    }

    c.write(m1Frame)
    await c.waitFor(() => c.closed || c.lines.length > 0 || c.garbage.length > 0, WAIT_MS)
    const answer = c.lines[0]
    if (answer === undefined) {
      const none: Prediction = { outcome: "unknown", why: "no message 2", endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
      const refused = await settle(c, ctx, none, () => [], failures)
      if (ctx.secureUnsupported()) {
        return { refused, outcome: "unknown", acked: [], secureUnsupported: true }
      }
      failures.push({ property: "the responder answers a valid handshake message 1", detail: c.closed ? "it hung up" : "no answer" })
      return { refused, outcome: "unknown", acked: [] }
    }
    let m2: Uint8Array | undefined
    if (isObject(answer) && typeof answer["hs"] === "string" && Object.keys(answer).length === 1) {
      m2 = Buffer.from(answer["hs"], "base64")
    } else {
      failures.push({ property: "message 2 is {\"hs\": base64}", detail: preview(JSON.stringify(answer)) })
    }
    let transport: Transport | undefined
    try {
      if (m2 === undefined) throw new Error("no message 2")
      const payload = JSON.parse(strictUtf8.decode(hs.readMessage(m2))) as unknown
      if (!isObject(payload) || payload["username"] !== ctx.nodeName) {
        failures.push({ property: "message 2 carries the node's username", detail: preview(JSON.stringify(payload)) })
      }
      const rs = hs.remoteStatic()
      if (rs === undefined || Buffer.compare(Buffer.from(rs), Buffer.from(ctx.nodeKey)) !== 0) {
        failures.push({ property: "message 2 proves the node's own static key", detail: "another key" })
      }
    } catch (e) {
      failures.push({ property: "the responder's message 2 authenticates", detail: (e as Error).message })
      c.destroy()
      await c.waitFor(() => c.closed, 1000)
      ctx.takeLogged(c.localPort)
      return { refused: false, outcome: "unknown", acked: [] }
    }

    const payload = plan.m3 === "bad-payload" ? plan.badPayload : enc.encode(JSON.stringify({ username: plan.username }))
    const m3 = b64(hs.writeMessage(payload))
    const m3Frame = frameBytes(obj(["hs", m3]))
    transport = hs.split()
    const sent: Array<SentCipher> = plan.inners.map((spec) => {
      // Noise caps a message at 65535 bytes: a longer inner object is cut (and so no longer JSON).
      const inner = spec.plaintext.length > MAX_PLAINTEXT_LENGTH ? classifyInner(spec.plaintext.subarray(0, MAX_PLAINTEXT_LENGTH), "cut") : spec
      return { ct: b64(transport!.encrypt(inner.plaintext)), inner }
    })
    const ctFrames = sent.map((s) => obj(["ct", s.ct]))
    let tail: Uint8Array
    if (plan.m3 === "mutated") {
      tail = plan.mutateM3(m3Frame)
    } else {
      const transportBytes = plan.mutateTransport !== undefined
        ? plan.mutateTransport(ctFrames, new Rng(plan.laterSeed))
        : enc.encode(ctFrames.map((f) => toText(f) + "\n").join(""))
      tail = concat(m3Frame, transportBytes)
    }
    let { pred, intact } = predictAfterHandshake(tail, m3, sent)
    if (plan.m3 === "bad-payload" && intact) {
      pred = { outcome: "bad", why: "message 3 payload is not {username}", endsMidFrame: false, acks: [], keyAnswers: 0, stored: [] }
      intact = false
    }
    c.write(tail)

    // Acks come encrypted, in order, after message 2.
    const acked: Array<string> = []
    let opened = 1
    const acks = () => {
      while (opened < c.lines.length) {
        const line = c.lines[opened++]
        try {
          if (!isObject(line) || typeof line["ct"] !== "string") throw new Error(`not a ct frame: ${preview(JSON.stringify(line), 80)}`)
          const inner = JSON.parse(strictUtf8.decode(transport!.decrypt(Buffer.from(line["ct"], "base64")))) as unknown
          if (!isObject(inner) || inner["type"] !== "ack" || typeof inner["id"] !== "string") {
            throw new Error(`not an ack: ${preview(JSON.stringify(inner), 80)}`)
          }
          acked.push(inner["id"])
        } catch (e) {
          failures.push({ property: "the responder sends only encrypted acks in a secure session", detail: (e as Error).message })
        }
      }
      return acked
    }
    const refused = await settle(c, ctx, pred, acks, failures)
    const mayStore = pred.outcome === "unknown"
      ? sent.flatMap((s) => (s.inner.kind === "msg" ? [s.inner.text] : []))
      : pred.stored
    return { refused, outcome: pred.outcome, acked: [], secure: { peer, mayStore, mustStore: pred.stored, pinnable: intact } }
  })
