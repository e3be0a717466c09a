/**
 * What the user is told at once about the names it hears, before any message is written
 * (protocol: "A pinned name is secure only", "Look-alike names"), each once:
 *
 * - a pinned name announced with another key, or with no key (once per name, key and
 *   address). Nothing secure goes to such an entry (the Initiator and the Outbox hold it,
 *   and a handshake refuses any other key); this is only what the user is shown;
 * - a new name that a person could take for a known or pinned one ("bоb" with a Cyrillic о
 *   beside "bob"), from the registry here and from a secure session in the Responder
 *   (`lookAlikeWarning`): once per name.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { spelledOut } from "../domain/Confusables.ts"
import { fingerprint } from "../domain/Fingerprint.ts"
import type { Peer } from "../domain/Peer.ts"
import { keyId } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { Trust } from "../trust/Trust.ts"
import * as Text from "./text.ts"

/** At most this many things are remembered as told; then the memory starts again. */
const MAX_TOLD = 4096

/** Remembers `key` as told; false when it was told already. */
export const tellOnce = (told: Set<string>, key: string): boolean => {
  if (told.has(key)) return false
  if (told.size >= MAX_TOLD) told.clear()
  told.add(key)
  return true
}

/**
 * The warning for a name that looks like other known (registry) or pinned names, if it does.
 * Never fails: a name not checked is only a warning not shown.
 */
export const lookAlikeWarning = (registry: PeerRegistry["Service"], trust: Trust["Service"], name: string) =>
  Effect.gen(function*() {
    const heard = (yield* registry.lookAlikes(name)).map((p) => p.username)
    const pinned = yield* trust.pinnedLookAlikes(name).pipe(Effect.orElseSucceed((): ReadonlyArray<string> => []))
    const others = [...new Set([...heard, ...pinned])]
    return others.length === 0 ? undefined : Text.lookAlike(spelledOut(name), others.map(spelledOut))
  })

export const layer: Layer.Layer<never, never, PeerRegistry | Trust | Events> = Layer.effectDiscard(
  Effect.gen(function*() {
    const registry = yield* PeerRegistry
    const trust = yield* Trust
    const events = yield* Events
    const told = new Set<string>()

    const warn = (message: string) =>
      Effect.andThen(Effect.logWarning(`presence: ${message}`), events.publish({ event: "warning", message }))

    const checkPin = (peer: Peer) =>
      Effect.gen(function*() {
        const pin = yield* trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
        if (Option.isNone(pin) || keyId(pin.value) === peer.id) return
        if (!tellOnce(told, `pin ${peer.key} ${peer.id ?? "-"} ${peer.address}:${peer.port}`)) return
        yield* warn(Text.pinnedAnnouncedOtherwise(peer, fingerprint(pin.value)))
      })

    const checkLook = (peer: Peer) =>
      Effect.gen(function*() {
        const warning = yield* lookAlikeWarning(registry, trust, peer.username)
        if (warning !== undefined && tellOnce(told, `look ${peer.key}`)) yield* warn(warning)
      })

    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) =>
      c._tag === "Appeared"
        ? Effect.andThen(checkPin(c.peer), checkLook(c.peer))
        : c._tag === "Moved"
        ? checkPin(c.peer)
        : Effect.void))
  })
)
