/**
 * Listens on the presence port, decodes each datagram with the Schema, ignores its own,
 * drops and counts bad ones (never stopping), and feeds the registry.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Result from "effect/Result"
import { decodePresence, type PresenceDatagram, presenceSignedBytes, signedPart } from "../domain/Presence.ts"
import { makeVerifier } from "../domain/Xeddsa.ts"
import { Config } from "./Config.ts"
import { Crypto } from "./Crypto.ts"
import { PeerRegistry } from "./PeerRegistry.ts"
import { PresenceSocket, type Received } from "./PresenceSocket.ts"

export interface DiscoveryStats {
  readonly received: number
  readonly accepted: number
  readonly own: number
  readonly rejected: number
  readonly rejectedByReason: Readonly<Record<string, number>>
}

export class Discovery extends Context.Service<Discovery, {
  readonly stats: Effect.Effect<DiscoveryStats>
}>()("p2pchat/Discovery") {}

/** The first words of a rejection reason, so that counts group alike rejections. */
const reasonClass = (reason: string) => reason.split(":")[0]!

/**
 * A token bucket per source address, checked before any parsing, so that a flood from one
 * host costs little and cannot crowd out the others: `rate` datagrams a second, bursts of
 * twice that. Oldest entries go first when the map is full (Map keeps insertion order).
 */
const rateLimiter = (rate: number) => {
  const buckets = new Map<string, { tokens: number; at: number }>()
  return (address: string, now: number): boolean => {
    let b = buckets.get(address)
    if (b === undefined) {
      if (buckets.size >= 4096) buckets.delete(buckets.keys().next().value!)
      b = { tokens: 2 * rate, at: now }
      buckets.set(address, b)
    }
    b.tokens = Math.min(2 * rate, b.tokens + ((now - b.at) / 1000) * rate)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
}

export const make: Effect.Effect<Discovery["Service"], never, Config | PresenceSocket | PeerRegistry | Crypto | Scope.Scope> = Effect.gen(function*() {
  const config = yield* Config
  const socket = yield* PresenceSocket
  const registry = yield* PeerRegistry
  const ownId = (yield* Crypto).identity.id
  let received = 0
  let accepted = 0
  let own = 0
  let rejected = 0
  const rejectedByReason: Record<string, number> = {}
  const allow = rateLimiter(config.presenceRatePerAddress)
  // Log a bad sender at most once a second, with how many were not logged meanwhile.
  const lastLogged = new Map<string, { at: number; suppressed: number }>()

  const reject = (d: Received, reason: string) =>
    Effect.gen(function*() {
      rejected++
      const cls = reasonClass(reason)
      rejectedByReason[cls] = (rejectedByReason[cls] ?? 0) + 1
      const now = yield* Clock.currentTimeMillis
      const seen = lastLogged.get(d.address)
      if (seen !== undefined && now - seen.at < 1000) {
        seen.suppressed++
        return
      }
      if (lastLogged.size > 1024) lastLogged.clear()
      lastLogged.set(d.address, { at: now, suppressed: 0 })
      const more = seen !== undefined && seen.suppressed > 0 ? ` (${seen.suppressed} more from it not shown)` : ""
      yield* Effect.logWarning(`discovery: dropped datagram from ${d.address}:${d.port}: ${reason}${more}`)
    })

  // The cheap check (a stamp not newer than the last one of that key: a replay) goes before
  // the signature, which costs a verification (its key converted once, then cached).
  const verify = makeVerifier()
  const signature = (datagram: PresenceDatagram) =>
    Effect.gen(function*() {
      const signed = signedPart(datagram)
      if (signed === undefined) return "unsigned"
      if (!(yield* registry.fresh(signed.id, signed.ts))) return "replayed: its stamp is not newer than the last one of its key"
      const ok = verify(signed.id, presenceSignedBytes(datagram), Buffer.from(signed.sig, "base64url"))
      return ok ? "signed" : "bad signature: not signed by the key it announces"
    })

  const handle = (d: Received) =>
    Effect.gen(function*() {
      received++
      if (!allow(d.address, yield* Clock.currentTimeMillis)) return yield* reject(d, "rate-limited: too many datagrams from this address")
      const decoded = decodePresence(d.payload)
      if (Result.isFailure(decoded)) return yield* reject(d, decoded.failure)
      const datagram = decoded.success
      if (datagram.value.id === ownId) {
        own++
        return
      }
      const proof = yield* signature(datagram)
      if (proof !== "signed" && proof !== "unsigned") return yield* reject(d, proof)
      accepted++
      if (datagram._tag === "Announcement") yield* registry.heard(datagram.value, d.address, d.port, proof === "signed")
      else yield* registry.bye(datagram.value, d.address, proof === "signed")
    })

  yield* Effect.forkScoped(Stream.runForEach(socket.received, handle))

  return {
    stats: Effect.sync(() => ({ received, accepted, own, rejected, rejectedByReason: { ...rejectedByReason } }))
  }
})

export const layer: Layer.Layer<Discovery, never, Config | PresenceSocket | PeerRegistry | Crypto> = Layer.effect(Discovery, make)
