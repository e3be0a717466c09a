/**
 * `p2pchat start --web [--web-port PORT] [--web-bind ADDR] [--open]` (docs/web.md): the
 * options, the node's layer with the web UI over it, and the address printed once. The
 * server itself is src/web/, loaded only when --web asks for it.
 */
import * as Effect from "effect/Effect"
import * as Flag from "effect/cli/Flag"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { UsageError } from "../services/Config.ts"
import { printLine, printWarning } from "./base.ts"

export const webFlags = {
  web: Flag.Boolean("web").pipe(Flag.withDescription("serve the web UI too, on 127.0.0.1:6080 (docs/web.md)"), Flag.withDefault(false)),
  webPort: Flag.String("web-port").pipe(Flag.withDescription("the web UI's port, default 6080 (0: any free port)"), Flag.optional),
  webBind: Flag.String("web-bind").pipe(
    Flag.withDescription("the web UI's address, default 127.0.0.1; another is reachable by others (a warning says so)"),
    Flag.optional
  ),
  open: Flag.Boolean("open").pipe(Flag.withDescription("open the web UI in the desktop's browser"), Flag.withDefault(false))
}

export interface WebFlags {
  readonly web: boolean
  readonly webPort: Option.Option<string>
  readonly webBind: Option.Option<string>
  readonly open: boolean
}

/** No web UI: `p2pchat` alone, without `start --web`. */
export const NO_WEB: WebFlags = { web: false, webPort: Option.none(), webBind: Option.none(), open: false }

const loadWeb = Effect.promise(() => import("../web/Web.ts"))

/**
 * The node's layer, with the web UI over it when `--web` is given. A bad port or address is
 * a usage error, found before anything is built.
 */
export const withWeb = <A, E, R>(flags: WebFlags, node: Layer.Layer<A, E, R>) =>
  Effect.gen(function*() {
    if (!flags.web) {
      if (Option.isSome(flags.webPort) || Option.isSome(flags.webBind) || flags.open) {
        return yield* new UsageError({ message: "--web-port, --web-bind and --open go with --web" })
      }
      return node
    }
    const Web = yield* loadWeb
    const usage = (e: { readonly message: string }) => new UsageError({ message: e.message })
    const port = yield* Effect.mapError(Web.portOf(Option.getOrUndefined(flags.webPort)), usage)
    const options = { port, bind: Option.getOrUndefined(flags.webBind), bindAsked: Option.isSome(flags.webBind) }
    yield* Effect.mapError(Web.hostOf(options), usage)
    return Web.withNode(options, node)
  })

/**
 * Prints the web UI's address with its token, once (and the warning of an address not on
 * loopback): `web UI: URL`, or with --json the event line `{"event":"info","message":"web UI: URL"}`.
 * Opens it with --open.
 */
export const showWeb = (flags: WebFlags, json: boolean) =>
  Effect.gen(function*() {
    if (!flags.web) return
    const Web = yield* loadWeb
    const found = yield* Effect.serviceOption(Web.WebServer)
    if (Option.isNone(found)) return
    const server = found.value
    if (server.warning !== undefined) yield* printWarning(server.warning)
    const line = `web UI: ${server.url}`
    yield* printLine(json ? JSON.stringify({ event: "info", message: line }) : line)
    if (flags.open && !(yield* Web.openInBrowser(server.url))) yield* printWarning("no desktop opener found: open the address above in a browser")
  })
