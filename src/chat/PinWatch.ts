/**
 * Tells the user at once when a pinned name is announced with another key, or with no key
 * (protocol: "A pinned name is secure only"), before any message is written to it: once per
 * name, key and address. Nothing secure goes to such an entry (the Initiator holds it and
 * the handshake refuses any other key); this is only what the user is shown.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { fingerprint } from "../domain/Fingerprint.ts"
import type { Peer } from "../domain/Peer.ts"
import { keyId } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { Trust } from "../trust/Trust.ts"
import * as Text from "./text.ts"

/** At most this many (name, key, address) are remembered as told; then the memory starts again. */
const MAX_TOLD = 4096

export const layer: Layer.Layer<never, never, PeerRegistry | Trust | Events> = Layer.effectDiscard(
  Effect.gen(function*() {
    const registry = yield* PeerRegistry
    const trust = yield* Trust
    const events = yield* Events
    const told = new Set<string>()

    const check = (peer: Peer) =>
      Effect.gen(function*() {
        const pin = yield* trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
        if (Option.isNone(pin) || keyId(pin.value) === peer.id) return
        const key = `${peer.key} ${peer.id ?? "-"} ${peer.address}:${peer.port}`
        if (told.has(key)) return
        if (told.size >= MAX_TOLD) told.clear()
        told.add(key)
        const message = Text.pinnedAnnouncedOtherwise(peer, fingerprint(pin.value))
        yield* Effect.logWarning(`trust: ${message}`)
        yield* events.publish({ event: "warning", message })
      })

    const changes = yield* registry.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (c) => c._tag === "Appeared" || c._tag === "Moved" ? check(c.peer) : Effect.void))
  })
)
