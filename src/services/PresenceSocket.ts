/**
 * The UDP sockets of presence. `layer`: the node's one socket on the presence port (6000),
 * shared by Announcer and Discovery, for a role that listens (`start`, `discover`).
 * Announcements leave from it, so their source port is the port a peer answers to.
 * `senderLayer`: a socket of its own on a port the system picks, for `announce` alone, which
 * only sends (as the original's Announcement.py did), so that it takes no datagram meant for
 * the `discover` beside it on the presence port.
 *
 * The presence port is bound exclusively (no address reuse): on Linux, datagrams sent to one
 * address go to only one of the sockets sharing a port, so a second listener would silently
 * take part of the first one's presence traffic. A clash is refused with a message instead.
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
import { Config, type NodeConfig } from "./Config.ts"

export class PresenceSocketError extends Data.TaggedError("PresenceSocketError")<{ readonly message: string }> {}

export interface Received {
  readonly payload: Uint8Array
  readonly address: string
  readonly port: number
}

export class PresenceSocket extends Context.Service<PresenceSocket, {
  /** The bound port (the configured one, or the OS's choice for port 0 and for a sender's socket). */
  readonly port: number
  /** Sends one datagram; a failure is logged, never fatal (the network may be down). */
  readonly send: (payload: string, host: string, port: number) => Effect.Effect<void>
  /** What arrives; nothing for a sender's socket. */
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

/**
 * Whether a datagram sent to `address` on the presence port would come to this node's own
 * socket: the address it is bound to, or, bound to every address, any address of this host.
 */
export const isOwnAddress = (bind: string | undefined, address: string): boolean => {
  if (bind !== undefined && bind !== "0.0.0.0") return address === bind
  if (address.startsWith("127.")) return true
  return Object.values(os.networkInterfaces()).some((infos) => (infos ?? []).some((i) => i.address === address))
}

const resolveHost = (host: string) =>
  Effect.tryPromise({
    try: () => dns.lookup(host, { family: 4 }).then((r) => r.address),
    catch: (e) => new PresenceSocketError({ message: `cannot resolve ${host}: ${(e as Error).message}` })
  })

const errnoOf = (e: DatagramSocket.DatagramSocketError): string => {
  const cause = "cause" in e.reason ? e.reason.cause : undefined
  return typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : ""
}

/** Why binding failed, in words, with what to do. `port` 0 is a sender's socket (any port). */
export const bindProblem = (e: DatagramSocket.DatagramSocketError, address: string, port: number): string => {
  const where = port === 0 ? `UDP ${address} (a port of its own, to send from)` : `UDP ${address}:${port}`
  const code = errnoOf(e)
  switch (code) {
    case "EADDRINUSE":
      return `cannot bind ${where}: the port is already in use by another program (another p2pchat start or ` +
        `discover, or a classic peer's discovery): only one of them would receive the datagrams sent to this ` +
        `host (EADDRINUSE); stop it, or choose another with --udp-port`
    case "EADDRNOTAVAIL":
      return `cannot bind ${where}: that address is not on this host (EADDRNOTAVAIL); fix --bind`
    case "EACCES":
    case "EPERM":
      return `cannot bind ${where}: permission denied (${code}; ports below 1024 need privileges); choose another with --udp-port`
    default: {
      const detail = [code, e.message, "cause" in e.reason ? String(e.reason.cause) : ""].find((s) => s !== "")
      return `cannot bind ${where} (${detail ?? "unknown error"}); choose another with --udp-port or --bind`
    }
  }
}

interface Opened {
  readonly reader: DatagramSocket.Reader
  readonly writer: DatagramSocket.Writer
  readonly port: number
}

/** Binds a UDP socket (port 0: the system picks one), broadcast enabled, without address reuse. */
const open = (config: NodeConfig, port: number, capacity: number): Effect.Effect<Opened, PresenceSocketError, Scope.Scope> =>
  Effect.gen(function*() {
    const address = config.bind ?? "0.0.0.0"
    const socket = yield* NodeDatagramSocket.make({
      bind: { address, port },
      broadcast: true,
      kernelReceiveBufferSize: capacity > 64 ? 1 << 20 : undefined,
      receiveBuffer: { capacity, strategy: "sliding" }
    })
    // The reader owns the native socket: acquiring it binds (a sender's socket too).
    const reader = yield* socket.reader.pipe(
      Effect.mapError((e) => new PresenceSocketError({ message: bindProblem(e, address, port) }))
    )
    const writer = yield* socket.writer
    return { reader, writer, port: NetAddress.isInetAddress(reader.address) ? reader.address.port : port }
  })

const sendOf = (writer: DatagramSocket.Writer) => (payload: string, host: string, toPort: number) =>
  Effect.gen(function*() {
    const ip = net.isIPv4(host) ? host : yield* resolveHost(host)
    yield* writer.write({ payload, address: NetAddress.inetAddressFromIpStringUnsafe(ip, toPort) })
  }).pipe(Effect.catch((e) => Effect.logDebug(`presence: send to ${host}:${toPort} failed: ${e.message}`)))

/** The presence port, listening and sending. */
export const make: Effect.Effect<PresenceSocket["Service"], PresenceSocketError, Config | Scope.Scope> = Effect.gen(function*() {
  const config = yield* Config
  const { reader, writer, port } = yield* open(config, config.udpPort, 8192)
  const received = Stream.fromEffectRepeat(reader.pull).pipe(
    Stream.catch((e) => Stream.fromEffect(Effect.logWarning(`presence: UDP socket closed: ${e.message}`)).pipe(Stream.drain)),
    Stream.flatMap((batch) => Stream.fromIterable(batch)),
    Stream.map((d): Received => ({
      payload: d.payload,
      address: NetAddress.formatIp(d.address.address),
      port: d.address.port
    }))
  )
  return { port, send: sendOf(writer), received, dropped: reader.dropped }
})

/**
 * A socket that only sends, from a port the system picks on the bound address. What comes to
 * it (a node's unicast answer to this source port) is never read: a few are kept, then
 * dropped.
 */
export const makeSender: Effect.Effect<PresenceSocket["Service"], PresenceSocketError, Config | Scope.Scope> = Effect.gen(
  function*() {
    const config = yield* Config
    const { writer, port } = yield* open(config, 0, 16)
    return { port, send: sendOf(writer), received: Stream.empty, dropped: () => 0 }
  }
)

export const layer: Layer.Layer<PresenceSocket, PresenceSocketError, Config> = Layer.effect(PresenceSocket, make)

/** The socket of `announce` alone: sends only, from a port of its own. */
export const senderLayer: Layer.Layer<PresenceSocket, PresenceSocketError, Config> = Layer.effect(PresenceSocket, makeSender)
