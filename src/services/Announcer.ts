/**
 * Announces this node's user (PROTOCOL.md 1): at once, then on the interval, to the
 * broadcast address of every interface and to every configured target; answers a
 * newcomer at once by unicast (at most once per sender per interval); says bye on a
 * clean shutdown. It sends from the PresenceSocket it is given: the presence port in a
 * whole node, a port of its own in `announce` alone.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { encodeAnnouncement, encodeBye } from "../domain/Presence.ts"
import { Config } from "./Config.ts"
import { Crypto } from "./Crypto.ts"
import { PeerRegistry } from "./PeerRegistry.ts"
import { broadcastAddresses, isOwnAddress, PresenceSocket } from "./PresenceSocket.ts"

export class Announcer extends Context.Service<Announcer, {
  readonly setAway: (away: boolean) => Effect.Effect<void>
  readonly away: Effect.Effect<boolean>
  readonly announceNow: Effect.Effect<void>
}>()("p2pchat/Announcer") {}

export const make: Effect.Effect<Announcer["Service"], never, Config | PresenceSocket | Crypto | Scope.Scope> = Effect.gen(function*() {
  const config = yield* Config
  const socket = yield* PresenceSocket
  const { identity, signPresence } = yield* Crypto
  const username = config.name
  // main.ts asks for the name before it builds an announcing node.
  if (username === undefined) return yield* Effect.die("the announcer needs a username")
  const away = yield* Ref.make(false)

  const destinations = () => [
    ...broadcastAddresses(config.bind).map((host) => ({ host, port: config.udpPort || socket.port })),
    ...config.targets
  ]
  // Every datagram carries a stamp above the last one (wall-clock milliseconds, kept
  // increasing), so receivers can tell a copy replayed from elsewhere from a fresh one.
  let lastStamp = 0
  const stamp = Effect.map(Clock.currentTimeMillis, (now) => (lastStamp = Math.max(now, lastStamp + 1)))
  const payload = Effect.gen(function*() {
    const ts = yield* stamp
    return encodeAnnouncement({ username, tcpPort: config.tcpPort, away: yield* Ref.get(away), id: identity.id, ts }, signPresence)
  })
  const announceNow = Effect.gen(function*() {
    const text = yield* payload
    yield* Effect.forEach(destinations(), (d) => socket.send(text, d.host, d.port), { discard: true })
  })

  yield* Effect.forkScoped(announceNow.pipe(Effect.repeat(Schedule.spaced(config.announceEveryMs))))

  // Where a newcomer at `address` listens (PROTOCOL.md 1.3). A p2pchat node announces from
  // its presence socket: the source port. A classic announcer, and p2pchat's `announce`
  // alone, send from a throwaway port, and whoever listens beside them (PeerDiscover.py,
  // `p2pchat discover`) is on the well-known presence port: so that port too, unless the
  // source port is it, or it is this node's own socket.
  const presencePort = config.udpPort || socket.port
  const answerPorts = (address: string, udpPort: number, proto: string): ReadonlyArray<number> => {
    const wellKnown = isOwnAddress(config.bind, address) ? [] : [presencePort]
    if (proto !== "p2pchat/1") return wellKnown
    return udpPort === presencePort ? [udpPort] : [udpPort, ...wellKnown]
  }

  // Answer newcomers by unicast, so they see us within a second instead of an interval.
  const registry = yield* Effect.serviceOption(PeerRegistry)
  if (Option.isSome(registry)) {
    const lastAnswered = new Map<string, bigint>()
    const changes = yield* registry.value.changes
    yield* Effect.forkScoped(Stream.runForEach(changes, (change) =>
      Effect.gen(function*() {
        if (change._tag !== "Appeared") return
        const { address, udpPort, proto } = change.peer
        const now = yield* Clock.monotonicTimeNanos
        const last = lastAnswered.get(address)
        if (last !== undefined && now - last < BigInt(config.announceEveryMs) * 1_000_000n) return
        if (lastAnswered.size > 4 * config.maxPeers) lastAnswered.clear()
        lastAnswered.set(address, now)
        const text = yield* payload
        yield* Effect.forEach(answerPorts(address, udpPort, proto), (port) => socket.send(text, address, port), { discard: true })
      })))
  }

  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const bye = encodeBye({ username, id: identity.id, ts: yield* stamp }, signPresence)
      yield* Effect.forEach(destinations(), (d) => socket.send(bye, d.host, d.port), { discard: true })
    })
  )

  return {
    setAway: (isAway) => Ref.set(away, isAway).pipe(Effect.andThen(announceNow)),
    away: Ref.get(away),
    announceNow
  }
})

export const layer: Layer.Layer<Announcer, never, Config | PresenceSocket | Crypto> = Layer.effect(Announcer, make)
