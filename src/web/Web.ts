/**
 * The local web UI (`p2pchat start --web`, docs/web.md): an HTTP server, Effect's own
 * (effect/http over @effect/platform-node's NodeHttpServer), serving the page and its API
 * beside the node's console, over the node's services. It listens on 127.0.0.1 (another
 * address only when `--web-bind` names it, with a warning), and every request needs the
 * token of its address (guard.ts).
 *
 * A room of the house just below main/cli: it uses the node's services (Events,
 * PeerRegistry, Initiator, History, Trust, Groups, Transfers) and the renderers of ui/.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import { Events } from "../services/Events.ts"
import * as Api from "./api.ts"
import { app } from "./app.ts"
import { loadAssets } from "./assets.ts"
import * as Files from "./files.ts"
import { allowedHosts, isIpv4, isLoopback } from "./guard.ts"
import { WebError } from "./WebError.ts"

export { WebError }

export const DEFAULT_PORT = 6080
export const DEFAULT_HOST = "127.0.0.1"

export interface WebOptions {
  /** 0: the OS chooses (tests). */
  readonly port: number
  /** `--web-bind`: the address to listen on; 127.0.0.1 when undefined. */
  readonly bind?: string | undefined
  /**
   * Whether the address was given by `--web-bind` (the user asked for it): only then may it
   * be one that is not loopback.
   */
  readonly bindAsked?: boolean | undefined
  /** The token; a fresh random one when undefined (tests give their own). */
  readonly token?: string | undefined
}

export class WebServer extends Context.Service<WebServer, {
  /** The address to open, with the token: printed once. */
  readonly url: string
  readonly host: string
  readonly port: number
  readonly token: string
  /** Why the address is risky (not loopback), to print as a warning; undefined on loopback. */
  readonly warning: string | undefined
}>()("p2pchat/WebServer") {}

/** The address to listen on, or why not: loopback always; another only when asked with --web-bind. */
export const hostOf = (options: WebOptions): Effect.Effect<string, WebError> => {
  const host = options.bind ?? DEFAULT_HOST
  const usage = (message: string) => Effect.fail(new WebError({ reason: "Usage", status: 400, message }))
  if (host === "localhost") return Effect.succeed(DEFAULT_HOST)
  if (!isIpv4(host)) return usage(`--web-bind ${host}: give an IPv4 address (127.0.0.1 is the default)`)
  if (isLoopback(host)) return Effect.succeed(host)
  if (options.bindAsked !== true) return usage(`the web UI listens on loopback only; ${host} needs --web-bind ${host}`)
  return Effect.succeed(host)
}

/** A port for --web-port: 0-65535. */
export const portOf = (text: string | undefined): Effect.Effect<number, WebError> => {
  if (text === undefined) return Effect.succeed(DEFAULT_PORT)
  const port = Number(text)
  return /^\d+$/.test(text) && port <= 65535
    ? Effect.succeed(port)
    : Effect.fail(new WebError({ reason: "Usage", status: 400, message: `--web-port ${text}: give a port number, 0-65535` }))
}

const bindFailed = (host: string, port: number) => (cause: unknown) =>
  new WebError({
    reason: "Bind",
    status: 500,
    message: `the web UI cannot listen on ${host}:${port}: ${(cause as { cause?: { message?: string } }).cause?.message ?? String(cause)} (--web-port chooses another port)`,
    cause
  })

export const make = (options: WebOptions) =>
  Effect.gen(function*() {
    const host = yield* hostOf(options)
    const assets = yield* loadAssets
    const services = yield* Api.services
    const files = yield* Files.services
    const events = yield* Events
    const token = options.token ?? randomBytes(24).toString("base64url")
    const node = http.createServer({ requestTimeout: 60_000 })
    const server = yield* NodeHttpServer.make(() => node, { port: options.port, host, gracefulShutdownTimeout: "1 second" }).pipe(
      Effect.mapError(bindFailed(host, options.port))
    )
    const port = "port" in server.address ? server.address.port : options.port
    yield* server.serve(app({ services, events, files, assets, hosts: allowedHosts(host, port), token }))
    // Open pages hold their live stream: closed at once when the node stops.
    yield* Effect.addFinalizer(() => Effect.sync(() => node.closeAllConnections()))
    const shown = host === "0.0.0.0" ? DEFAULT_HOST : host
    return WebServer.of({
      url: `http://${shown}:${port}/?token=${token}`,
      host,
      port,
      token,
      warning: isLoopback(host)
        ? undefined
        : `the web UI listens on ${host}: anyone who can reach it and learns the token can read and send your messages`
    })
  })

export const layer = (options: WebOptions) => Layer.effect(WebServer, make(options))

/** A node's layer (`nodeRole`) with the web UI over it, serving its services. */
export const withNode = <A, E, R>(options: WebOptions, node: Layer.Layer<A, E, R>) => layer(options).pipe(Layer.provideMerge(node))

/** Opens `url` with the desktop's opener where there is one; false when there is none. */
export const openInBrowser = (url: string): Effect.Effect<boolean> =>
  Effect.callback<boolean>((resume) => {
    const command = process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open"
    try {
      const child = spawn(command, [url], { stdio: "ignore", detached: true })
      child.once("error", () => resume(Effect.succeed(false)))
      child.once("spawn", () => {
        child.unref()
        resume(Effect.succeed(true))
      })
    } catch {
      resume(Effect.succeed(false))
    }
  })
