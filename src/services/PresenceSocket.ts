/**
 * The node's one UDP socket on the presence port (6000), shared by Announcer and
 * Discovery. It is bound with address reuse, so several nodes (or a node beside a classic
 * peer) share the port on one host, and with broadcast enabled. Announcements leave from
 * this socket, so their source port is the port a peer answers to.
 */
import { NodeDatagramSocket } from "@effect/platform-node"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { NetAddress } from "effect/net"
import type { DatagramSocket } from "effect/socket"
import * as dns from "node:dns/promises"
import * as net from "node:net"
import * as os from "node:os"
import { Config } from "./Config.ts"

export class PresenceSocketError extends Data.TaggedError("PresenceSocketError")<{ readonly message: string }> {}

export interface Received {
  readonly payload: Uint8Array
  readonly address: string
  readonly port: number
}

export class PresenceSocket extends Context.Service<PresenceSocket, {
  /** The bound port (the configured one, or the OS's choice for port 0). */
  readonly port: number
  /** Sends one datagram; a failure is logged, never fatal (the network may be down). */
  readonly send: (payload: string, host: string, port: number) => Effect.Effect<void>
  readonly received: Stream.Stream<Received>
  /** Datagrams the socket dropped because the reader fell behind. */
  readonly dropped: () => number
}>()("p2pchat/PresenceSocket") {}

/** Broadcast addresses (address OR NOT netmask) of the up, non-internal IPv4 interfaces. */
export const broadcastAddresses = (bind: string | undefined): ReadonlyArray<string> => {
  const result = new Set<string>()
  for (const infos of Object.values(os.networkInterfaces())) {
    for (const info of infos ?? []) {
      if (info.family !== "IPv4" || info.internal) continue
      // A node bound to one address speaks on that address's network only.
      if (bind !== undefined && bind !== "0.0.0.0" && info.address !== bind) continue
      const a = info.address.split(".").map(Number)
      const m = info.netmask.split(".").map(Number)
      result.add(a.map((octet, i) => (octet | (~m[i]! & 255)) & 255).join("."))
    }
  }
  return [...result]
}

const resolveHost = (host: string) =>
  Effect.tryPromise({
    try: () => dns.lookup(host, { family: 4 }).then((r) => r.address),
    catch: (e) => new PresenceSocketError({ message: `cannot resolve ${host}: ${(e as Error).message}` })
  })

export const make: Effect.Effect<PresenceSocket["Service"], PresenceSocketError, Config | Scope.Scope> = Effect.gen(function*() {
  const config = yield* Config
  const socket = yield* NodeDatagramSocket.make({
    bind: { address: config.bind ?? "0.0.0.0", port: config.udpPort },
    reuseAddress: true,
    broadcast: true,
    kernelReceiveBufferSize: 1 << 20,
    receiveBuffer: { capacity: 8192, strategy: "sliding" }
  })
  const reader: DatagramSocket.Reader = yield* socket.reader.pipe(
    Effect.mapError((e) =>
      new PresenceSocketError({
        message: `cannot open UDP port ${config.udpPort}${config.bind ? ` on ${config.bind}` : ""} (${e.message}); ` +
          `choose another with --udp-port or --bind`
      })
    )
  )
  const writer = yield* socket.writer
  const port = NetAddress.isInetAddress(reader.address) ? reader.address.port : config.udpPort
  const send = (payload: string, host: string, toPort: number) =>
    Effect.gen(function*() {
      const ip = net.isIPv4(host) ? host : yield* resolveHost(host)
      yield* writer.write({ payload, address: NetAddress.inetAddressFromIpStringUnsafe(ip, toPort) })
    }).pipe(Effect.catch((e) => Effect.logDebug(`presence: send to ${host}:${toPort} failed: ${e.message}`)))
  const received = Stream.fromEffectRepeat(reader.pull).pipe(
    Stream.catch((e) => Stream.fromEffect(Effect.logWarning(`presence: UDP socket closed: ${e.message}`)).pipe(Stream.drain)),
    Stream.flatMap((batch) => Stream.fromIterable(batch)),
    Stream.map((d): Received => ({
      payload: d.payload,
      address: NetAddress.formatIp(d.address.address),
      port: d.address.port
    }))
  )
  return { port, send, received, dropped: reader.dropped }
})

export const layer: Layer.Layer<PresenceSocket, PresenceSocketError, Config> = Layer.effect(PresenceSocket, make)
