/**
 * A Transport in memory, for unit tests of the chat roles and dialects without sockets
 * (the shape of memberlist's mock transport). Nodes share a MemoryNetwork; each node's
 * layer dials from an address of its own. Bytes go through the same `channelOf` as on TCP,
 * so framing, limits and a hang-up mid-frame behave as they do on a socket.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { channelOf } from "./Channel.ts"
import { type Accepted, Transport, TransportError } from "./Transport.ts"

type Item = { readonly bytes: string | Uint8Array } | { readonly end: TransportError }

/** One direction of a connection. */
interface Pipe {
  readonly items: Queue.Queue<Item>
  ended: TransportError | undefined
}

const closedError = new TransportError({ reason: "Closed", message: "connection closed" })
const resetError = new TransportError({ reason: "Io", message: "connection failed: connection reset" })

const makePipe = Effect.map(Queue.unbounded<Item>(), (items): Pipe => ({ items, ended: undefined }))

const endPipe = (pipe: Pipe, why: TransportError) =>
  Effect.suspend(() => {
    if (pipe.ended !== undefined) return Effect.void
    pipe.ended = why
    return Effect.asVoid(Queue.offer(pipe.items, { end: why }))
  })

/** The bytes one side reads from `incoming` and writes to `outgoing`. */
const endpoint = (incoming: Pipe, outgoing: Pipe) => {
  let readEnd: TransportError | undefined
  const writable = <A>(f: () => Effect.Effect<A>) =>
    Effect.suspend(() =>
      outgoing.ended !== undefined
        ? Effect.fail(new TransportError({ reason: "Io", message: "write failed: closed" }))
        : Effect.asVoid(f())
    )
  return {
    pull: Effect.suspend(() => {
      if (readEnd !== undefined) return Effect.fail(readEnd)
      return Effect.flatMap(Queue.take(incoming.items), (item) => {
        if ("end" in item) {
          readEnd = item.end
          return Effect.fail(item.end)
        }
        return Effect.succeed([item.bytes])
      })
    }),
    write: (bytes: string) => writable(() => Queue.offer(outgoing.items, { bytes })),
    // copied: the bytes in the pipe are the reader's alone
    writeBytes: (chunks: ReadonlyArray<Uint8Array>) =>
      writable(() => Queue.offerAll(outgoing.items, chunks.map((c) => ({ bytes: c.slice() }))))
  }
}

/** Raw bytes into a listener, for tests that play a misbehaving peer. */
export interface RawConnection {
  readonly write: (bytes: string) => Effect.Effect<void, TransportError>
  /** The next chunk the server wrote; fails once it closed. */
  readonly read: Effect.Effect<ReadonlyArray<string | Uint8Array>, TransportError>
  /** Hangs up its sending side (FIN); what the server writes can still be read. */
  readonly close: Effect.Effect<void>
}

interface Listener {
  readonly accept: (client: { readonly address: string; readonly port: number }, toServer: Pipe, toClient: Pipe) => Effect.Effect<void>
}

export interface MemoryNetwork {
  readonly listeners: Map<string, Listener>
  nextPort: number
  /** Opens a connection from `from` whose bytes the test writes itself. */
  readonly connectRaw: (host: string, port: number, from?: string) => Effect.Effect<RawConnection, TransportError, Scope.Scope>
}

const connect = (network: MemoryNetwork, host: string, port: number, from: string) =>
  Effect.gen(function*() {
    const listener = network.listeners.get(`${host}:${port}`)
    if (listener === undefined) {
      return yield* new TransportError({
        reason: "Refused",
        message: `cannot connect to ${host}:${port} (connection refused: nothing listens on that port)`
      })
    }
    const toServer = yield* makePipe
    const toClient = yield* makePipe
    const clientPort = network.nextPort++
    yield* listener.accept({ address: from, port: clientPort }, toServer, toClient)
    // The client's scope closes both ways; a raw client may half-close (FIN) and still read.
    yield* Effect.addFinalizer(() => Effect.andThen(endPipe(toServer, closedError), endPipe(toClient, closedError)))
    return { bytes: endpoint(toClient, toServer), halfClose: endPipe(toServer, closedError) }
  })

export const makeNetwork = (): MemoryNetwork => {
  const network: MemoryNetwork = {
    listeners: new Map(),
    nextPort: 40000,
    connectRaw: (host, port, from = "127.0.0.1") =>
      Effect.map(connect(network, host, port, from), ({ bytes, halfClose }) => ({
        write: bytes.write,
        read: bytes.pull,
        close: halfClose
      }))
  }
  return network
}

const serveOn = (network: MemoryNetwork, address: string) =>
(
  options: { readonly host: string; readonly port: number },
  handle: (c: Accepted) => Effect.Effect<void, never, Scope.Scope>
) =>
  Effect.gen(function*() {
    const host = options.host === "0.0.0.0" ? address : options.host
    const port = options.port === 0 ? network.nextPort++ : options.port
    const key = `${host}:${port}`
    if (network.listeners.has(key)) {
      return yield* new TransportError({ reason: "Listen", message: `cannot listen on TCP port ${port}: the port is already in use` })
    }
    const scope = yield* Effect.scope
    // Handlers run with the listener's services (its logger, clock...), not the dialer's.
    const context = yield* Effect.context<never>()
    network.listeners.set(key, {
      accept: (client, toServer, toClient) => {
        const accepted: Accepted = {
          address: client.address,
          port: client.port,
          label: `${client.address}:${client.port}`,
          open: (maxFrameBytes) => Effect.succeed(channelOf(endpoint(toServer, toClient), client, maxFrameBytes)),
          destroy: Effect.andThen(endPipe(toClient, resetError), endPipe(toServer, resetError)),
          refuse: Effect.andThen(endPipe(toClient, closedError), endPipe(toServer, closedError))
        }
        // The server's side ends with its handler: the client reads a clean end of stream.
        const served = Effect.scoped(handle(accepted)).pipe(
          Effect.ensuring(Effect.andThen(endPipe(toClient, closedError), endPipe(toServer, closedError)))
        )
        return Effect.asVoid(Effect.forkIn(Effect.provideContext(served, context), scope))
      }
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => void network.listeners.delete(key)))
    return port
  })

/** A node at `address` on `network`. */
export const layer = (network: MemoryNetwork, address: string) =>
  Layer.succeed(Transport, Transport.of({
    dial: (host, port) =>
      Effect.map(connect(network, host, port, address), ({ bytes }) => channelOf(bytes, { address: host, port })),
    serve: serveOn(network, address)
  }))

