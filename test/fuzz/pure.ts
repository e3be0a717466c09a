/**
 * Properties of the pure code on hostile input, checked without sockets:
 * - decodePresence never throws, and accepts exactly what the protocol's rules accept;
 * - the JsonSplitter never throws and finds the same frames however the stream is cut;
 *   decodeFrame and decodeInner never throw and agree with the rules; plainText and
 *   classicDecrypt never throw;
 * - Noise readMessage / transport decrypt throw only NoiseError, and never accept a
 *   handshake message 2 or 3 or a transport message that was altered.
 */
import { isDeepStrictEqual } from "node:util"
import { classicDecrypt } from "../../src/domain/Classic.ts"
import { decodeFrame, decodeInner, plainText } from "../../src/domain/Frames.ts"
import { JsonSplitter, MAX_FRAME_BYTES } from "../../src/domain/Framing.ts"
import { createHandshake, generateKeyPair, type KeyPair, NoiseError, type Transport } from "../../src/domain/Noise.ts"
import { decodePresence, presenceSignedBytes } from "../../src/domain/Presence.ts"
import { makeVerifier } from "../../src/domain/Xeddsa.ts"
import { mutateBytes } from "./mutate.ts"
import { PUSH_BYTES, referenceFrame, referenceInner, referencePresence, referenceSignatureOk } from "./oracle.ts"
import type { Rng } from "./rng.ts"

export interface Failure {
  /** The property that broke, in a few words. */
  readonly property: string
  readonly detail: string
}

/** A short printable view of an input, for failure reports. */
export const preview = (input: Uint8Array | string, max = 240): string => {
  const text = typeof input === "string" ? input : Buffer.from(input).toString("utf8")
  const shown = JSON.stringify(text.length > max ? text.slice(0, max) : text)
  const size = typeof input === "string" ? `${input.length} chars` : `${input.length} bytes`
  return `${shown}${text.length > max ? "..." : ""} (${size})`
}

const describe = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}` : String(e))

/** A decoded value must be a plain object: no own `__proto__`, an ordinary prototype. */
const plainObjectProblem = (v: unknown): string | undefined => {
  if (typeof v !== "object" || v === null) return "not an object"
  const proto = Object.getPrototypeOf(v)
  if (proto !== Object.prototype && proto !== null) return "decoded value has an unusual prototype"
  if (Object.hasOwn(v, "__proto__")) return "decoded value kept a __proto__ key"
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Datagrams

/** src's signature check, as Discovery makes it. */
const srcVerify = makeVerifier()

/**
 * `sigOk`: whether the case made a good signature (when it knows); then the reference
 * check must say so too (a check of the oracle itself).
 */
export const checkDatagram = (bytes: Uint8Array, sigOk?: boolean): Array<Failure> => {
  const failures: Array<Failure> = []
  let r: ReturnType<typeof decodePresence>
  try {
    r = decodePresence(bytes)
  } catch (e) {
    return [{ property: "decodePresence never throws", detail: describe(e) }]
  }
  const ref = referencePresence(bytes)
  if ((r._tag === "Success") !== ref.ok) {
    failures.push({
      property: "decodePresence accepts exactly what PROTOCOL.md accepts",
      detail: r._tag === "Success"
        ? `src accepted ${JSON.stringify(r.success)}, the rules refuse it`
        : `src refused it (${r.failure}), the rules accept ${JSON.stringify(ref.ok ? ref.value : null)}`
    })
  } else if (r._tag === "Success" && ref.ok) {
    const got = r.success
    if (got._tag !== ref.tag || !isDeepStrictEqual({ ...got.value }, ref.value)) {
      failures.push({
        property: "decodePresence keeps exactly the protocol's fields",
        detail: `src ${got._tag} ${JSON.stringify(got.value)}, rules ${ref.tag} ${JSON.stringify(ref.value)}`
      })
    }
    const p = plainObjectProblem(got.value)
    if (p !== undefined) failures.push({ property: "decoded datagrams are plain objects", detail: p })
    const { id, sig } = got.value
    if (sig !== undefined && id !== undefined) {
      const rules = referenceSignatureOk(ref.tag, ref.value)
      let src: boolean
      try {
        src = srcVerify(new Uint8Array(Buffer.from(id, "base64url")), presenceSignedBytes(got), new Uint8Array(Buffer.from(sig, "base64url")))
      } catch (e) {
        failures.push({ property: "the presence signature check never throws", detail: describe(e) })
        src = !rules
      }
      if (src !== rules) {
        failures.push({
          property: "the presence signature check agrees with the rules (XEdDSA: Ed25519 under the Edwards form of the id, s < L, no small-order or non-canonical id)",
          detail: `src says ${src ? "good" : "bad"}, the rules ${rules ? "good" : "bad"}: ${JSON.stringify(got.value)}`
        })
      }
      if (sigOk !== undefined && rules !== sigOk) {
        failures.push({
          property: "the oracle's signature check agrees with how the case made the signature",
          detail: `made ${sigOk ? "good" : "bad"}, the oracle says ${rules ? "good" : "bad"}: ${JSON.stringify(got.value)}`
        })
      }
    }
  } else if (r._tag === "Failure" && typeof r.failure !== "string") {
    failures.push({ property: "a refused datagram has a reason", detail: String(r.failure) })
  }
  return failures
}

// ---------------------------------------------------------------------------------------------
// Streams and frames

const splitInPieces = (bytes: Uint8Array, cuts: ReadonlyArray<number>) => {
  const splitter = new JsonSplitter()
  const frames: Array<string> = []
  let error: string | undefined
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    const r = splitter.push(bytes.subarray(from, cut))
    frames.push(...r.frames)
    if (r.error !== undefined) {
      error = r.error._tag
      break
    }
    from = cut
  }
  return { frames, error, pending: error === undefined ? splitter.pending() : 0 }
}

const checkFrame = (text: string, rng: Rng, failures: Array<Failure>) => {
  let frame: ReturnType<typeof decodeFrame>
  try {
    frame = decodeFrame(text)
  } catch (e) {
    failures.push({ property: "decodeFrame never throws", detail: `${describe(e)} on ${preview(text)}` })
    return
  }
  const ref = referenceFrame(text)
  if ((frame._tag === "Success") !== ref.ok) {
    failures.push({
      property: "decodeFrame accepts exactly what PROTOCOL.md accepts",
      detail: `${frame._tag === "Success" ? "src accepted, rules refuse" : `src refused (${frame.failure}), rules accept`}: ${preview(text)}`
    })
  } else if (frame._tag === "Success" && ref.ok) {
    const f = frame.success
    if (f._tag !== ref.tag || !isDeepStrictEqual({ ...f.frame }, ref.value)) {
      failures.push({
        property: "decodeFrame keeps exactly the protocol's fields",
        detail: `src ${f._tag} ${JSON.stringify(f.frame)}, rules ${ref.tag} ${JSON.stringify(ref.value)}`
      })
    }
    const p = plainObjectProblem(f.frame)
    if (p !== undefined) failures.push({ property: "decoded frames are plain objects", detail: p })
    try {
      if (f._tag === "Plain" && typeof plainText(f.frame.unencrypted_message) !== "string") {
        failures.push({ property: "plainText gives a string", detail: preview(text) })
      }
      if (f._tag === "Encrypted") {
        const key = Buffer.from(rng.bytes(24))
        const r = classicDecrypt(key, f.frame.encrypted_message)
        if (typeof r.ok !== "boolean") failures.push({ property: "classicDecrypt gives a result", detail: preview(text) })
      }
    } catch (e) {
      failures.push({ property: "plainText and classicDecrypt never throw", detail: `${describe(e)} on ${preview(text)}` })
    }
  }
  let inner: ReturnType<typeof decodeInner>
  try {
    inner = decodeInner(text)
  } catch (e) {
    failures.push({ property: "decodeInner never throws", detail: `${describe(e)} on ${preview(text)}` })
    return
  }
  const refInner = referenceInner(text)
  if ((inner._tag === "Success") !== refInner.ok) {
    failures.push({
      property: "decodeInner accepts exactly what PROTOCOL.md accepts",
      detail: `${inner._tag === "Success" ? "src accepted, rules refuse" : "src refused, rules accept"}: ${preview(text)}`
    })
  } else if (inner._tag === "Success" && refInner.ok && !isDeepStrictEqual({ ...inner.success }, refInner.value)) {
    failures.push({
      property: "decodeInner keeps exactly the protocol's fields",
      detail: `src ${JSON.stringify(inner.success)}, rules ${JSON.stringify(refInner.value)}`
    })
  }
}

/**
 * The stream through the splitter (whole, and cut at random places: same frames, same
 * verdict), then each frame through decodeFrame and decodeInner. `pristine`: the frames the
 * stream was made of when nothing was mutated.
 */
export const checkStream = (bytes: Uint8Array, rng: Rng, pristine?: ReadonlyArray<string>): Array<Failure> => {
  const failures: Array<Failure> = []
  let whole: ReturnType<typeof splitInPieces>
  let cut: ReturnType<typeof splitInPieces>
  // The reference pushes PUSH_BYTES at a time, as the Responder does (a single push of a
  // big stream full of escapes is quadratic: see hostile-input.test.ts); the other cuts at
  // random places, never more than PUSH_BYTES apart.
  const slices: Array<number> = []
  for (let o = PUSH_BYTES; o < bytes.length; o += PUSH_BYTES) slices.push(o)
  const cuts: Array<number> = []
  if (bytes.length > 1 && bytes.length < 400 && rng.chance(0.1)) {
    for (let i = 1; i < bytes.length; i++) cuts.push(i)
  } else {
    const n = rng.int(1, 8)
    for (let i = 0; i < n; i++) cuts.push(rng.int(0, bytes.length))
    const shift = rng.int(1, PUSH_BYTES - 1)
    for (let o = shift; o < bytes.length; o += PUSH_BYTES) cuts.push(o)
    cuts.sort((a, b) => a - b)
  }
  try {
    whole = splitInPieces(bytes, slices)
    cut = splitInPieces(bytes, cuts)
  } catch (e) {
    return [{ property: "the splitter never throws", detail: `${describe(e)} on ${preview(bytes)}` }]
  }
  if (!isDeepStrictEqual(whole, cut)) {
    failures.push({
      property: "the splitter finds the same frames however the stream is cut",
      detail: `in slices: ${whole.frames.length} frames, error ${whole.error}, pending ${whole.pending}; ` +
        `cut at ${cuts.length} places: ${cut.frames.length} frames, error ${cut.error}, pending ${cut.pending}`
    })
  }
  for (const text of whole.frames) {
    const size = Buffer.byteLength(text, "utf8")
    if (!text.startsWith("{") || !text.endsWith("}") || size > MAX_FRAME_BYTES) {
      failures.push({ property: "a frame is one object of at most 64 KiB", detail: preview(text) })
    }
    checkFrame(text, rng, failures)
  }
  if (pristine !== undefined && (whole.error !== undefined || !isDeepStrictEqual(whole.frames, pristine))) {
    failures.push({
      property: "the splitter gives back the frames a stream was made of",
      detail: `made of ${pristine.length} frames, split into ${whole.frames.length} (error ${whole.error})`
    })
  }
  return failures
}

// ---------------------------------------------------------------------------------------------
// Noise

const PROLOGUE = new TextEncoder().encode("p2pchat/1")
const PAYLOAD = new TextEncoder().encode("{\"username\":\"fuzz\"}")

/** Static keys and one transport pair, made once: key generation is the slow part. */
export interface NoiseFixtures {
  readonly keys: ReadonlyArray<KeyPair>
  transport: { readonly send: Transport; readonly recv: Transport; sent: number; last: Uint8Array | undefined } | undefined
}

export const makeNoiseFixtures = (): NoiseFixtures => ({
  keys: Array.from({ length: 4 }, () => generateKeyPair()),
  transport: undefined
})

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0

/** Runs `step` on an altered input: it must throw NoiseError, or (when allowed) succeed. */
const expectRefused = (
  what: string,
  altered: boolean,
  mayPass: boolean,
  step: () => unknown,
  failures: Array<Failure>,
  input: Uint8Array
) => {
  try {
    step()
  } catch (e) {
    if (!(e instanceof NoiseError)) {
      failures.push({ property: `Noise ${what} throws only NoiseError`, detail: `${describe(e)} on ${preview(input, 80)}` })
    }
    if (!altered) failures.push({ property: `Noise ${what} accepts an unaltered message`, detail: describe(e) })
    return false
  }
  if (altered && !mayPass) {
    failures.push({ property: `Noise ${what} refuses an altered message`, detail: `accepted ${preview(input, 80)}` })
  }
  return true
}

export const checkNoise = (rng: Rng, fx: NoiseFixtures): Array<Failure> => {
  const failures: Array<Failure> = []
  const stage = rng.weighted<1 | 2 | 3 | 4>([[1, 1], [2, 2], [2, 3], [4, 4]])
  if (stage === 4) {
    if (fx.transport === undefined || fx.transport.sent > 5000) {
      const i = createHandshake({ initiator: true, prologue: PROLOGUE, staticKey: fx.keys[0]! })
      const r = createHandshake({ initiator: false, prologue: PROLOGUE, staticKey: fx.keys[1]! })
      r.readMessage(i.writeMessage())
      i.readMessage(r.writeMessage(PAYLOAD))
      r.readMessage(i.writeMessage(PAYLOAD))
      fx.transport = { send: i.split(), recv: r.split(), sent: 0, last: undefined }
    }
    const t = fx.transport
    const plaintext = rng.bytes(rng.skewed(200))
    const ct = t.send.encrypt(plaintext)
    t.sent++
    for (let k = 0; k < 4; k++) {
      const choice = rng.int(0, 9)
      const altered = choice === 0 && t.last !== undefined ? t.last : mutateBytes(rng, ct, 2).value
      const changed = !sameBytes(altered, ct)
      expectRefused("transport decrypt", changed, false, () => t.recv.decrypt(altered), failures, altered)
      if (!changed) {
        // it was accepted, so the receiver moved on: the pair is spent
        fx.transport = undefined
        return failures
      }
    }
    try {
      const pt = t.recv.decrypt(ct)
      if (!sameBytes(pt, plaintext)) failures.push({ property: "Noise transport round trip", detail: "plaintext differs" })
    } catch (e) {
      failures.push({ property: "a refused transport message leaves the receiver unchanged", detail: describe(e) })
      fx.transport = undefined
    }
    t.last = ct
    return failures
  }
  const i = createHandshake({ initiator: true, prologue: PROLOGUE, staticKey: fx.keys[rng.int(0, 1)]! })
  const r = createHandshake({ initiator: false, prologue: PROLOGUE, staticKey: fx.keys[rng.int(2, 3)]! })
  const m1 = i.writeMessage()
  if (stage === 1) {
    const altered = mutateBytes(rng, m1).value
    // Message 1 is not authenticated: an altered ephemeral key may pass; only the error kind is checked.
    expectRefused("readMessage (message 1)", !sameBytes(altered, m1), true, () => r.readMessage(altered), failures, altered)
    return failures
  }
  r.readMessage(m1)
  const m2 = r.writeMessage(PAYLOAD)
  if (stage === 2) {
    const altered = mutateBytes(rng, m2).value
    expectRefused("readMessage (message 2)", !sameBytes(altered, m2), false, () => i.readMessage(altered), failures, altered)
    return failures
  }
  i.readMessage(m2)
  const m3 = i.writeMessage(PAYLOAD)
  const altered = mutateBytes(rng, m3).value
  expectRefused("readMessage (message 3)", !sameBytes(altered, m3), false, () => r.readMessage(altered), failures, altered)
  return failures
}
